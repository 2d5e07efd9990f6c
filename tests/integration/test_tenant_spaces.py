# Tenant spaces side by side: each tenant's sessions, queues and session
# journal sit behind a lock of their own. Two tenants fill persistent
# sessions at once, from publishers served by both workers, on the same
# topic and with the same ClientIds; each acknowledged message is kept for
# its own tenant's subscriber only, both tenants' queues come back after a
# kill -9 from the one session store they are committed to together, and
# each arrives complete and in order.
import queue
import ssl
import threading

import paho.mqtt.client as paho
import pytest

from conftest import TIMEOUT
from identity_pki import IdentityServer, pki  # noqa: F401

N = 2000  # messages per tenant
TOPIC = "flood"


@pytest.fixture
def server(tmp_path, pki):  # noqa: F811
    s = IdentityServer(tmp_path / "spaces", pki, options={"workers": "2", "max_queued": str(N)}).start()
    yield s
    s.stop()


def tenants(server):
    """Two tenants, each with an MQTT user of the same name."""
    out = {}
    for t in ("spacea", "spaceb"):
        admin = server.tenant(t)
        out[t] = server.user(t, admin, "app", f"app-secret-{t}")
    return out


def flood(server, auth, tag, acked, failures):
    """Publishes N QoS 1 messages "<tag> <n>" with up to 100 in flight and
    records the numbers acknowledged."""
    c = paho.Client(client_id="pub", protocol=paho.MQTTv311)
    c.tls_set(ca_certs=str(server.server_ca), cert_reqs=ssl.CERT_REQUIRED)
    c.username_pw_set(*auth)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    mids, by_mid, lock, done = set(), {}, threading.Lock(), threading.Event()

    def on_publish(client, userdata, mid):
        with lock:
            mids.add(mid)
            if len(mids) == N:
                done.set()

    c.on_publish = on_publish
    try:
        c.connect("localhost", server.mqtt_port)
        c.loop_start()
        for n in range(1, N + 1):  # N < 65536: every mid names one message
            by_mid[c.publish(TOPIC, f"{tag} {n}", 1).mid] = n
        if not done.wait(TIMEOUT * 6):
            failures.append(f"{tag}: {len(mids)} of {N} acknowledged")
        c.disconnect()
        c.loop_stop()
    except Exception as e:  # reported by the test thread
        failures.append(f"{tag}: {e!r}")
    with lock:
        acked.update(by_mid[m] for m in mids if m in by_mid)


def test_two_tenants_fill_persistent_sessions_at_once_and_keep_them(server, clients):
    auth = tenants(server)
    # The same ClientId in both tenants: two sessions, one per tenant space.
    for t, a in auth.items():
        sub = clients("sub", clean_session=False, tls={"cafile": server.server_ca},
                      username=a[0], password=a[1])
        sub.connect(server.mqtt_port, host="localhost")
        assert sub.subscribe(TOPIC, qos=1) == (1,)
        sub.disconnect()

    acked = {t: set() for t in auth}
    failures = []
    threads = [threading.Thread(target=flood, args=(server, a, t, acked[t], failures))
               for t, a in auth.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT * 8)
    assert not failures, failures
    assert {t: len(acked[t]) for t in auth} == {t: N for t in auth}

    # Acknowledged means committed: a kill -9 now loses none of it.
    server.kill()
    server.start()
    for t, a in auth.items():
        sub = clients("sub", clean_session=False, tls={"cafile": server.server_ca},
                      username=a[0], password=a[1])
        sub.connect(server.mqtt_port, host="localhost")
        assert sub.session_present, f"{t}: the session did not survive"
        got = []
        while len(got) < N:
            try:
                m = sub.messages.get(timeout=TIMEOUT * 2)
            except queue.Empty:
                raise AssertionError(f"{t}: {len(got)} of {N} arrived, then nothing") from None
            tag, n = m.payload.decode().split()
            assert tag == t, f"{t}'s subscriber got {tag}'s message {n}"
            got.append(int(n))
        assert got == list(range(1, N + 1)), f"{t}: messages lost, repeated or out of order"
        assert sub.drain() == [], f"{t}: more than was published"
        sub.disconnect()
