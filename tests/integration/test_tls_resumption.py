# TLS session resumption with device identity: a device that reconnects with
# the session ticket of an earlier full handshake sends no certificate chain,
# so the broker must remember that the earlier chain held the tenant's CA. A
# session whose full handshake did not prove that must not be resumable into
# an accepted device. Python's ssl module is the client (real TLS 1.3 tickets).

import pytest

from identity_pki import pki, server_fixture, tls13_context, tls_mqtt_connect  # noqa: F401

server = server_fixture("tls-resumption")


def tls_context(server, dev, chain=True):
    return tls13_context(server.server_ca, dev, chain)


def mqtt_connect(server, ctx, client_id, session=None):
    """(CONNACK return code or None, the TLS session, whether it was reused)."""
    r = tls_mqtt_connect(server.mqtt_port, ctx, client_id, session)
    return r.rc, r.session, r.reused


@pytest.fixture(scope="module")
def tenant(server, pki):
    auth = server.tenant("resume")
    server.trust("resume", auth, pki.ca_a.pem, auto=True, name="resumption CA")
    return auth


def test_device_resumes_its_session_without_resending_its_chain(server, pki, tenant):
    ctx = tls_context(server, pki.a1)
    rc, session, reused = mqtt_connect(server, ctx, pki.a1.cn)
    assert rc == 0 and not reused
    assert session is not None and session.has_ticket
    rc, _, reused = mqtt_connect(server, ctx, pki.a1.cn, session=session)
    assert reused, "the broker did not resume the TLS session"
    assert rc == 0


def test_session_of_a_refused_chain_does_not_admit_on_resumption(server, pki, tenant):
    # Leaf only: the CA is not in the presented chain, so CONNECT is refused;
    # resuming that session (no chain at all) must be refused as well.
    ctx = tls_context(server, pki.a3, chain=False)
    rc, session, reused = mqtt_connect(server, ctx, pki.a3.cn)
    assert rc == 5 and not reused
    assert session is not None
    rc, _, reused = mqtt_connect(server, ctx, pki.a3.cn, session=session)
    assert reused
    assert rc == 5


def test_resumed_device_is_still_judged_by_the_current_policy(server, pki, tenant):
    # Resumption skips sending the chain, not the policy: the ClientId rule
    # still applies on the resumed connection.
    ctx = tls_context(server, pki.a2)
    rc, session, _ = mqtt_connect(server, ctx, pki.a2.cn)
    assert rc == 0
    rc, _, reused = mqtt_connect(server, ctx, "someone-else", session=session)
    assert reused and rc == 5
