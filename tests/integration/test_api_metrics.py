# GET /metrics (issue 11): the Prometheus text format, for the management
# admin or a scraper holding metrics_token, scraped with curl; the values
# move with real traffic (mosquitto_pub and paho over mutual TLS): TLS
# handshakes and their histogram, connections by tenant and kind, refusals by
# reason, messages and bytes in by QoS, retained messages, store operation
# latency, process CPU/RSS.
import re
import subprocess

import pytest

from apiserver import ADMIN
from identity_pki import assert_mosquitto_refused, pki, server_fixture  # noqa: F401

TOKEN = "scrape-token-0123456789"
server = server_fixture("metrics", options={"metrics_token": TOKEN})

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(server, auth=ADMIN, headers=None):
    r = server.call("GET", "/metrics", auth, headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith(("# HELP ", "# TYPE ")), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


@pytest.fixture(scope="module")
def tenant(server, pki):
    auth = server.tenant("metrica")
    server.trust("metrica", auth, pki.ca_a.pem)
    return auth


def test_only_the_management_admin_or_the_token_may_scrape(server, tenant):
    assert server.call("GET", "/metrics").status == 401
    assert server.call("GET", "/metrics", tenant).status == 403
    r = server.call("GET", "/metrics", headers={"Authorization": "Bearer wrong-token"})
    assert r.status == 401, r
    v = scrape(server, auth=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert v["process_resident_memory_bytes"] > 0
    assert "process_cpu_seconds_total" in v


def test_values_move_with_traffic(server, pki, clients, tenant):
    before = scrape(server)
    full = 'certmq_tls_handshakes_total{mode="full"}'
    assert server.mosquitto_pub(pki.a1, "t/m", "hello", qos=1).returncode == 0
    assert server.mosquitto_pub(pki.a1, "t/r", "kept", qos=0).returncode == 0
    assert_mosquitto_refused(server.mosquitto_pub(pki.a_expired, "t/x", "m"))
    dev = server.connect_device(clients, pki.a2)
    after = scrape(server)
    assert after[full] >= before.get(full, 0) + 4
    assert after['certmq_tls_handshake_seconds_count{mode="full"}'] == after[full]
    assert after['certmq_tls_handshake_seconds_bucket{mode="full",le="+Inf"}'] == after[full]
    assert after['certmq_connections{tenant="metrica",kind="certificate"}'] == 1
    assert after['certmq_refusals_total{reason="expired"}'] >= 1
    q1 = 'certmq_messages_in_total{qos="1"}'
    assert after[q1] >= before.get(q1, 0) + 1
    b1 = 'certmq_bytes_in_total{qos="1"}'
    assert after[b1] >= before.get(b1, 0) + len("hello")
    # Registering a2 on first connect wrote to the store.
    ops = "certmq_store_operation_seconds_count"
    assert after[ops] > before[ops]
    assert after['certmq_store_operation_seconds_bucket{le="+Inf"}'] == after[ops]
    dev.disconnect()


def test_retained_count_follows_set_and_clear(server, pki, tenant):
    key = "certmq_retained_messages"
    base = scrape(server)[key]
    assert server.mosquitto_pub(pki.a3, "t/keep", "v", qos=1).returncode == 0
    assert scrape(server)[key] == base, "a message without RETAIN was counted"
    assert retain(server, pki.a3, ["-m", "v"]).returncode == 0
    assert scrape(server)[key] == base + 1
    assert retain(server, pki.a3, ["-n"]).returncode == 0  # empty payload: clears it
    assert scrape(server)[key] == base


def retain(server, dev, payload_args):
    """mosquitto_pub -r on t/keep as dev."""
    return subprocess.run(
        ["mosquitto_pub", "-h", "localhost", "-p", str(server.mqtt_port), "-V", "mqttv311",
         "-t", "t/keep", "-r", "-q", "1", "--cafile", server.server_ca, "-i", dev.cn,
         "--cert", dev.chain, "--key", dev.key] + payload_args, capture_output=True, timeout=30)


def test_broker_lock_contention_is_exposed(server, pki, tenant):
    # The counters exist from the start, never go back, and a wait count of
    # zero comes with zero seconds waited.
    waits, secs = "certmq_broker_lock_waits_total", "certmq_broker_lock_wait_seconds_total"
    before = scrape(server)
    assert server.mosquitto_pub(pki.a1, "t/lock", "x", qos=1).returncode == 0
    after = scrape(server)
    assert after[waits] >= before[waits] >= 0
    assert after[secs] >= before[secs] >= 0
    assert (after[waits] == 0) == (after[secs] == 0)
