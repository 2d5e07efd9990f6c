# End-to-end refusal reporting (issue #3): every refused device is one log
# line on stderr naming tenant, CN, anchor fingerprint and reason, and
# `certmq serve` logs a counter per reason when it shuts down.
import re

from identity_pki import IdentityServer, pki  # noqa: F401


def test_refusal_lines_and_per_reason_counters_at_shutdown(tmp_path, pki, clients):
    s = IdentityServer(tmp_path / "srv", pki).start()
    try:
        auth = s.tenant("logt")
        fp = s.trust("logt", auth, pki.ca_c.pem, auto=False)
        s.trust("logt", auth, pki.ca_a.pem, auto=True)
        for _ in range(2):
            assert s.connack(clients, pki.b1) == 5               # untrusted
        assert s.connack(clients, pki.c1) == 5                   # device not registered
        for cid in ("x", "y", "d:a1:"):
            assert s.connack(clients, pki.a1, cid) == 5          # client id mismatch
        assert s.connack(clients, pki.a1) == 0                   # accepted: not counted
        bad = s.password_client(clients, ("logt/admin", "wrong-password"), "pw")
        bad.connect(s.mqtt_port, host="localhost", expect_rc=4)
        s.assert_alive()
        lines = s.refusal_lines("c1")
        assert len(lines) == 1, lines
        assert re.search(r" WARN refused device tenant=logt cn=c1 anchor=%s "
                         r'reason="device not registered"$' % fp, lines[0]), lines
    finally:
        s.stop()
    err = s.stderr()
    tail = err[err.index("stopping"):]
    assert "refused devices, untrusted: 2" in tail, tail
    assert "refused devices, device not registered: 1" in tail, tail
    assert "refused devices, client id mismatch: 3" in tail, tail
    assert "refused connections, bad user name or password: 1" in tail, tail
    assert "accepted" not in tail
    assert "expired" not in tail  # reasons that never happened are not listed
