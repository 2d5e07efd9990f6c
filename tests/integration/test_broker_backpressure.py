# A client that sends faster than it reads: it floods QoS 1 PUBLISHes and
# does not read the PUBACKs. The broker must stop reading from it rather than
# buffer its acknowledgements without bound, and once the client reads again
# every PUBACK arrives, in order: nothing is lost.
import socket
import threading
import time

from conftest import TIMEOUT, connect_packet, publish_packet

BROKER_LISTENERS = ("plain",)
N = 5_000_000  # 70 MB in, 20 MB of PUBACKs the broker would otherwise hold
# (loopback socket buffers alone take up to ~36 MB of it)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sanitized(pid):
    """ASan keeps freed memory in quarantine, so its RSS says nothing here."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def test_flooding_client_is_paused_not_buffered(broker):
    s = socket.socket()
    # A small receive window, so the PUBACKs cannot all wait in our kernel.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", broker.ports["plain"]))
    s.sendall(connect_packet("flooder"))
    assert s.recv(4) == b"\x20\x02\x00\x00"
    one = [publish_packet("flood/t", b"x", qos=1, pid=i % 65535 + 1) for i in range(65535)]
    data = b"".join(one[i % 65535] for i in range(N))
    sent = [0]

    def sender():
        view = memoryview(data)
        try:
            while sent[0] < len(data):
                sent[0] += s.send(view[sent[0]:sent[0] + 65536])
        except OSError:
            pass

    before = rss_kib(broker.proc.pid)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    # Wait until the sender is stuck: the broker stopped reading.
    last, still = -1, 0
    deadline = time.monotonic() + 4 * TIMEOUT
    while still < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
        still = still + 1 if sent[0] == last else 0
        last = sent[0]
    assert sent[0] < len(data), "the broker read everything without pausing"
    grown = rss_kib(broker.proc.pid) - before
    if not sanitized(broker.proc.pid):
        # Unbounded, the PUBACKs alone would be 20 MB; the paused output
        # (OUT_PAUSE), the input buffer and allocator caches stay well under 8.
        assert grown < 8 * 1024, f"broker grew by {grown} KiB while the client did not read"

    # The client reads again: every acknowledgement arrives, in order.
    got = bytearray()
    deadline = time.monotonic() + 12 * TIMEOUT
    while len(got) < 4 * N and time.monotonic() < deadline:
        chunk = s.recv(1 << 20)
        assert chunk, "broker closed the connection"
        got += chunk
    t.join(TIMEOUT)
    assert len(got) == 4 * N
    for i in (0, 1, 65534, 65535, N - 1):
        assert got[4 * i:4 * i + 4] == b"\x40\x02" + (i % 65535 + 1).to_bytes(2, "big")
    s.close()
