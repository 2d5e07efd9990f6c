#!/usr/bin/python3
# Queues N QoS 1 messages of 64 bytes on TOPIC through the broker at PORT (plain
# MQTT 3.1.1), keeping WINDOW unacknowledged, and returns once every one has its
# PUBACK (so each is committed to the broker's session store). For
# bench/durable.sh: mosquitto_pub -l stops at the end of its input without
# sending what it still holds.
import select
import socket
import sys


def packet(first, body):
    n, rl = len(body), bytearray()
    while True:
        n, byte = n // 128, n % 128
        rl.append(byte | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(rl) + body


def main():
    port, n, topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    s = socket.create_connection(("127.0.0.1", port))
    cid = b"durable-fill"
    s.sendall(packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid))
    ack = s.recv(4)
    assert ack == b"\x20\x02\x00\x00", ack
    head = len(topic).to_bytes(2, "big") + topic
    sent = acked = 0
    pending = b""
    while acked < n:
        if sent < n and sent - acked < window:
            k = min(window - (sent - acked), n - sent, 2000)
            s.sendall(b"".join(
                packet(0x32, head + ((i % 65535) + 1).to_bytes(2, "big") +
                       f"{i:08d}".encode().ljust(64, b"x"))
                for i in range(sent, sent + k)))
            sent += k
            if not select.select([s], [], [], 0)[0]:
                continue
        data = s.recv(1 << 20)
        if not data:
            sys.exit(f"durable_fill: connection closed after {acked} acknowledgements")
        pending += data
        whole = len(pending) // 4  # only PUBACKs (0x40 0x02 id id) come back
        assert all(pending[i * 4] == 0x40 for i in range(whole)), pending[:16]
        acked += whole
        pending = pending[whole * 4:]
    s.sendall(b"\xe0\x00")
    s.close()


if __name__ == "__main__":
    main()
