# session_expiry: an offline persistent session is ended after the configured
# time (memory is bounded even when clients never come back); within that time
# it is kept, with its session-present flag on return.
import time

from conftest import DISCONNECT, RawClient, unique_topic

BROKER_OPTIONS = {"session_expiry": "2"}
BROKER_LISTENERS = ("plain",)


def connack(broker, client_id):
    c = RawClient(broker.ports["plain"])
    try:
        ack = c.connect(client_id, clean=False)
        c.send(DISCONNECT)
        c.is_closed(2)
        return ack
    finally:
        c.close()


def test_offline_session_is_kept_within_expiry(broker):
    cid = "keep-" + unique_topic("id").replace("/", "-")
    assert connack(broker, cid) == b"\x20\x02\x00\x00"
    assert connack(broker, cid) == b"\x20\x02\x01\x00"


def test_offline_session_ends_after_expiry(broker):
    cid = "gone-" + unique_topic("id").replace("/", "-")
    assert connack(broker, cid) == b"\x20\x02\x00\x00"
    time.sleep(3.5)
    assert connack(broker, cid) == b"\x20\x02\x00\x00"
    assert "offline session(s) expired" in broker.stderr()
