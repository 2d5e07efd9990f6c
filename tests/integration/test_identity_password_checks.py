# Password logins are checked off the network threads: a PBKDF2 costs ~85 ms,
# and on a worker it would stall every client of that worker. Failed attempts
# are limited per source address and per user (auth_max_failures within
# auth_failure_window); past the limit an attempt is refused unchecked.
import threading
import time

import pytest

from conftest import RawClient, connect_packet, publish_packet
from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("identity-password-checks",
                        options={"workers": "1", "auth_threads": "1",
                                 "auth_max_failures": "5", "auth_failure_window": "3600"})


@pytest.fixture(scope="module")
def tenant(server, pki):
    admin = server.tenant("pwchk")
    server.trust("pwchk", admin, pki.ca_a.pem, auto=True)
    for name in ("alice", "bob", "carol"):
        server.user("pwchk", admin, name, f"{name}-secret-1")
    return admin


def tls(server):
    return {"cafile": server.server_ca}


def login(server, user, password, source="127.0.0.1", client_id=None):
    """The CONNACK return code of a password login from source."""
    c = RawClient(server.mqtt_port, tls=tls(server), source=source)
    try:
        ack = c.connect(client_id or f"c-{time.monotonic_ns()}", username=user,
                        password=password)
        assert ack[:3] == b"\x20\x02\x00", ack
        return ack[3]
    finally:
        c.close()


def test_failed_attempts_lock_the_user_then_the_right_password_is_refused(server, tenant):
    for i in range(5):
        assert login(server, "pwchk/alice", f"guess-{i}", source=f"127.0.1.{i + 1}") == 4
    # Locked: the right password, from a fresh address, is refused unchecked.
    assert login(server, "pwchk/alice", "alice-secret-1", source="127.0.1.99") == 5
    assert "too many failed attempts" in server.stderr()
    # Another user of the tenant is not affected.
    assert login(server, "pwchk/bob", "bob-secret-1", source="127.0.1.99") == 0


def test_failed_attempts_lock_the_source(server, tenant):
    for i in range(5):
        assert login(server, f"pwchk/nobody{i}", "x", source="127.0.2.1") == 4
    assert login(server, "pwchk/carol", "carol-secret-1", source="127.0.2.1") == 5
    assert login(server, "pwchk/carol", "carol-secret-1", source="127.0.2.2") == 0


def test_password_checks_do_not_stall_the_network_worker(server, pki, tenant):
    """One worker, one check thread: eight slow wrong-password CONNECTs are
    queued, and a device's PUBLISH sent after them is answered before they are."""
    a1 = pki.a1
    dev = RawClient(server.mqtt_port, tls={"cafile": server.server_ca, "certfile": a1.chain,
                                           "keyfile": a1.key})
    assert dev.connect(a1.cn) == b"\x20\x02\x00\x00"
    attackers = [RawClient(server.mqtt_port, tls=tls(server), source=f"127.0.3.{i + 1}")
                 for i in range(8)]
    done = {}

    def wait_connack(i, c):
        c.recv_packet(timeout=30)
        done[i] = time.monotonic()

    threads = [threading.Thread(target=wait_connack, args=(i, c)) for i, c in enumerate(attackers)]
    for i, c in enumerate(attackers):
        c.send(connect_packet(f"attacker-{i}", username=f"pwchk/user{i}", password="wrong"))
    for t in threads:
        t.start()
    dev.send(publish_packet("s/us", "100,alive", qos=1, pid=9))
    assert dev.recv_packet() == b"\x40\x02\x00\x09"
    answered = time.monotonic()
    for t in threads:
        t.join(40)
    assert len(done) == 8
    # Before the fix the worker ran the checks itself: the PUBACK came last.
    assert answered < max(done.values()), (answered, sorted(done.values()))
    for c in attackers + [dev]:
        c.close()
