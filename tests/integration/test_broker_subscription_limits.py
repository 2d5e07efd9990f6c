# Subscription limits (max_topic_levels, max_subscriptions,
# max_subscription_bytes): a client cannot grow the broker without bound by
# subscribing; what exceeds a limit gets SUBACK 0x80 and the rest still works.
import os
import re

from conftest import (DISCONNECT, publish_packet, raw_connected, subscribe_packet, unique_topic,
                      unsubscribe_packet)

BROKER_LISTENERS = ("plain",)
BROKER_OPTIONS = {
    "max_topic_levels": "8",
    "max_subscriptions": "5",
    "max_subscription_bytes": "20000",
    "max_packet_size": "8388608",
}


def client(broker):
    return raw_connected(broker.ports["plain"], "lim-" + unique_topic("c").replace("/", "-"))


def suback(c, pid, topics):
    c.send(subscribe_packet(pid, [(t, 0) for t in topics]))
    p = c.recv_packet()
    assert p[:1] == b"\x90" and p[2:4] == pid.to_bytes(2, "big"), p
    return list(p[4:])


def test_filter_deeper_than_max_topic_levels_is_refused(broker):
    c = client(broker)
    assert suback(c, 1, ["a/b/c/d/e/f/g/h", "a/b/c/d/e/f/g/h/i", "+/+/+/+/+/+/+/+/#"]) == \
        [0, 0x80, 0x80]
    c.send(DISCONNECT)


def test_publish_deeper_than_max_topic_levels_is_dropped(broker):
    sub = client(broker)
    assert suback(sub, 1, ["#"]) == [0]
    pub = client(broker)
    pub.send(publish_packet("a/b/c/d/e/f/g/h/i/j", "deep", qos=1, pid=3))
    assert pub.recv_packet() == b"\x40\x02\x00\x03"  # acknowledged, as 3.1.1 requires
    pub.send(publish_packet("a/b", "shallow"))
    # Only the shallow message arrives.
    assert sub.recv_packet() == publish_packet("a/b", "shallow")
    assert not sub.is_closed(0.5) and sub.buf == b""


def test_more_than_max_subscriptions_are_refused(broker):
    c = client(broker)
    topics = [f"lim/{i}" for i in range(7)]
    assert suback(c, 1, topics) == [0, 0, 0, 0, 0, 0x80, 0x80]
    # Resubscribing to a held filter is not a new subscription.
    assert suback(c, 2, ["lim/0"]) == [0]
    # Unsubscribing frees a place.
    c.send(unsubscribe_packet(4, ["lim/1"]))
    assert c.recv_packet() == b"\xb0\x02\x00\x04"
    assert suback(c, 5, ["lim/new"]) == [0]
    c.send(DISCONNECT)


def test_subscription_memory_is_bounded(broker):
    c = client(broker)
    big = ["m/" + ("x" * 3000) + f"/{i}" for i in range(5)]
    codes = suback(c, 1, big)
    # Each filter costs more than its 3 KB twice over: 20,000 bytes hold three.
    assert codes[:2] == [0, 0] and 0x80 in codes, codes
    c.send(DISCONNECT)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def test_deep_subscribe_flood_does_not_grow_the_broker(broker):
    """The probe's attack: many SUBSCRIBEs of deep 6.5 MB filters."""
    c = client(broker)
    before = rss_kib(broker.proc.pid)
    deep = "/".join(["a"] * 32000)  # 64 KB, 32,000 levels
    for pid in range(1, 11):  # ten 6.4 MB SUBSCRIBEs of 100 filters
        assert suback(c, pid, [deep + f"/{i}" for i in range(100)]) == [0x80] * 100
    after = rss_kib(broker.proc.pid)
    # Unbounded, these filters make 32 million tree nodes (gigabytes). ASan
    # keeps freed packet buffers in its quarantine (up to 256 MiB).
    bound = 400 * 1024 if sanitized(broker.proc.pid) else 32 * 1024
    assert after - before < bound, (before, after)
    assert os.path.exists(f"/proc/{broker.proc.pid}")
    c.send(DISCONNECT)
