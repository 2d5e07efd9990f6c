# The broker on PostgreSQL (`store postgresql://...`), against a throwaway
# server this module starts with scripts/pgtest.sh (its own, since one test
# stops it under the running broker): the README's walk from zero to a
# connected device, an all-or-nothing bulk upload, everything surviving a
# restart, a persistent session's queued QoS 1 messages surviving kill -9,
# and the server going away: REST answers 503, a new device that needs the
# store gets CONNACK 3, and both recover without a broker restart. The
# durable-session tests run here again with their sessions in PostgreSQL.
# Under `make test` (CERTMQ_TEST_PG set) a server that cannot start fails
# the module; run alone without it, the module is skipped.
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from apiserver import ADMIN, make_tenant
from conftest import CERTMQ_BIN, REPO, TIMEOUT, Broker, free_port
from identity_pki import IdentityServer, pki  # noqa: F401 (fixture)
# The durable-session tests that do not read SQLite files, collected here a
# second time: with this module's `durable` fixture they run on PostgreSQL.
from test_durable_sessions import OPTIONS as DURABLE_OPTIONS
from test_durable_sessions import (  # noqa: F401
    test_acknowledged_subscription_survives_kill9_at_once,
    test_clean_restart_keeps_queues_and_subscriptions,
    test_mosquitto_clients_kill9_loses_nothing_acknowledged,
    test_paho_kill9_loses_nothing_acknowledged,
    test_session_expired_during_downtime_is_gone,
    test_v5_subscription_options_survive_restart,
)

PGTEST = str(REPO / "scripts" / "pgtest.sh")
DB = "certmq_it"

pytestmark = pytest.mark.certmq_only


class Pg:
    def __init__(self, d, uri):
        self.dir, self.server_uri = d, uri
        self.uri = self.uri_of(DB)

    def uri_of(self, db):
        return self.server_uri.rsplit("/", 1)[0] + "/" + db

    def create(self, db):
        r = subprocess.run(["psql", "-X", self.server_uri, "-c", f"DROP DATABASE IF EXISTS {db}",
                            "-c", f"CREATE DATABASE {db}"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr

    def sql(self, query):
        r = subprocess.run(["psql", "-X", "-tA", self.uri, "-c", query], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def ctl(self, what):
        r = subprocess.run(["bash", PGTEST, what, self.dir], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr


def own_postgresql(prefix, db):
    """A PostgreSQL of a module's own (scripts/pgtest.sh in a temp dir) with
    database db made: yields its Pg, stops it after. Under make test
    (CERTMQ_TEST_PG set) one that cannot start fails the module."""
    d = tempfile.mkdtemp(prefix=prefix)
    r = subprocess.run(["bash", PGTEST, "start", d], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        why = f"PostgreSQL did not start: {r.stderr[-2000:]}"
        if os.environ.get("CERTMQ_TEST_PG"):
            pytest.fail(why)
        pytest.skip(why)
    p = Pg(d, r.stdout.strip())
    try:
        p.create(db)
        p.uri = p.uri_of(db)
        yield p
    finally:
        subprocess.run(["bash", PGTEST, "stop", d], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pg():
    yield from own_postgresql("certmq-pg-it-", DB)


@pytest.fixture
def durable(tmp_path, certs, pg):
    """test_durable_sessions' brokers (plain TCP, killed by the tests), each
    on a fresh PostgreSQL database."""
    made = []

    def make(**options):
        db = f"durable_{len(made)}_{os.getpid()}"
        pg.create(db)
        opts = {**DURABLE_OPTIONS, "store": pg.uri_of(db), **options}
        b = Broker(tmp_path / f"broker{len(made)}", certs, opts, ("plain",)).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pki, pg):  # noqa: F811
    s = IdentityServer(tmp_path_factory.mktemp("store-pg"), pki,
                       options={"store": pg.uri, "persistence": "true"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def acme(srv, tmp_path_factory):
    """Tenant acme trusting a CA made with `certmq pki`, with auto-registration."""
    d = tmp_path_factory.mktemp("acme")
    run(CERTMQ_BIN, "pki", "ca", "init", d / "ca", "--cn", "Acme Devices CA")
    auth = make_tenant(srv, "acme")
    srv.trust("acme", auth, d / "ca" / "ca.pem")
    return SimpleNamespace(auth=auth, dir=d)


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{args}\n{r.stdout}{r.stderr}"
    return r


def device(acme, cn):
    """cn's certificate from the tenant CA (`certmq pki`), issued once."""
    out = acme.dir / "devices"
    if not (out / f"{cn}.key").exists():
        run(CERTMQ_BIN, "pki", "issue", "device", "--ca", acme.dir / "ca", "--cn", cn, "--out",
            out)
    return SimpleNamespace(cn=cn, chain=str(out / f"{cn}.chain.pem"), key=str(out / f"{cn}.key"),
                           pem=str(out / f"{cn}.pem"),
                           tls=lambda ca, chain=True: {"cafile": ca,
                                                       "certfile": str(out / f"{cn}.chain.pem"),
                                                       "keyfile": str(out / f"{cn}.key")})


def device_ids(srv, auth):
    r = srv.call("GET", "/devices", auth)
    assert r.status == 200, r
    return {d.get("id") or d.get("deviceId") or d.get("cn") for d in r.json["devices"]}


def restart(srv, kill=False):
    if kill:
        srv.kill()
    else:
        srv.stop()
    srv.start()


def test_zero_to_a_connected_device_on_postgresql(srv, acme, pg, clients):
    dev = device(acme, "sensor-1")
    c = srv.connect_device(clients, dev)
    c.disconnect()
    assert "sensor-1" in device_ids(srv, acme.auth)
    # It is PostgreSQL that holds it, and no SQLite file was made.
    assert pg.sql("SELECT cn FROM devices WHERE tenant = 'acme'") == "sensor-1"
    assert not (srv.data / "certmq.db").exists()
    assert pg.sql("SELECT version FROM schema_version") == "10"  # 10: ticket keys
    assert pg.uri not in srv.stderr()  # the conninfo is never logged


def test_a_bulk_upload_with_a_bad_row_changes_nothing(srv, acme, pg, tmp_path):
    devices = pg.sql("SELECT count(*) FROM devices")
    users = pg.sql("SELECT count(*) FROM users")
    f = tmp_path / "bad.csv"
    # good rows, then one that is not CSV (an unterminated quote): the file
    # is refused and none of its rows is stored
    f.write_text('ID,AUTH_TYPE\nbulk-1,CERTIFICATES\nbulk-2,CERTIFICATES\n"bulk-3,CERTIFICATES\n')
    r = srv.call("POST", "/devicecontrol/bulkNewDeviceRequests", acme.auth, files={"file": f})
    assert r.status == 422, r
    assert pg.sql("SELECT count(*) FROM devices") == devices
    assert pg.sql("SELECT count(*) FROM users") == users
    assert "bulk-1" not in device_ids(srv, acme.auth)
    f.write_text("ID,AUTH_TYPE\nbulk-1,CERTIFICATES\nbulk-2,CERTIFICATES\n")
    r = srv.call("POST", "/devicecontrol/bulkNewDeviceRequests", acme.auth, files={"file": f})
    assert r.status == 201 and r.json["numberOfCreated"] == 2, r
    assert pg.sql("SELECT count(*) FROM devices WHERE cn LIKE 'bulk-%'") == "2"
    assert {"bulk-1", "bulk-2"} <= device_ids(srv, acme.auth)


def test_everything_survives_a_restart(srv, acme, pg, clients):
    restart(srv)
    ids = device_ids(srv, acme.auth)
    assert {"sensor-1", "bulk-1", "bulk-2"} <= ids, ids
    r = srv.call("GET", "/tenant/tenants/acme/trusted-certificates", acme.auth)
    assert r.status == 200 and r.json["certificates"], r
    # the registered device connects again; a new one still auto-registers
    srv.connect_device(clients, device(acme, "sensor-1")).disconnect()
    srv.connect_device(clients, device(acme, "sensor-2")).disconnect()
    assert pg.sql("SELECT count(*) FROM devices WHERE cn LIKE 'sensor-%'") == "2"


def test_queued_qos1_messages_survive_kill_9(srv, acme, pg, clients):
    sub = srv.password_client(clients, acme.auth, "keeper")
    sub.c._clean_session = False
    sub.connect(srv.mqtt_port, host="localhost", expect_rc=0)
    assert sub.subscribe("acme-q/#", 1) == (1,)
    sub.disconnect()
    for i in range(3):
        r = srv.mosquitto_pub(None, f"acme-q/{i}", f"kept-{i}", client_id="pub-1", qos=1,
                              auth=acme.auth)
        assert r.returncode == 0, r.stderr
    # acknowledged QoS 1 messages are committed for the session in PostgreSQL
    assert pg.sql("SELECT count(*) FROM sess_items") == "3"
    restart(srv, kill=True)
    again = srv.password_client(clients, acme.auth, "keeper")
    again.c._clean_session = False
    again.connect(srv.mqtt_port, host="localhost", expect_rc=0)
    assert again.session_present
    got = sorted(again.get().payload.decode() for _ in range(3))
    assert got == ["kept-0", "kept-1", "kept-2"], got
    again.disconnect()


def wait_for(what, pred):
    deadline = time.monotonic() + 3 * TIMEOUT
    while not pred():
        assert time.monotonic() < deadline, f"{what}: not within {3 * TIMEOUT} s"
        time.sleep(0.1)


def test_postgresql_down_gives_503_and_connack_3_then_recovers(srv, acme, pg, clients):
    known = device(acme, "sensor-1")
    new = device(acme, "late-1")
    pg.ctl("pause")
    try:
        # REST that needs the store: a clear 503
        r = srv.call("POST", "/tenant/tenants", ADMIN,
                     {"id": "during", "adminName": "admin", "adminPass": "tenant-secret-1"})
        assert r.status == 503, r
        assert "unavailable" in r.json.get("message", "") + r.json.get("error", ""), r
        # a new device needs the store to register: CONNACK 3 (server unavailable)
        assert srv.connack(clients, new) == 3
        # a known device connects from memory
        srv.connect_device(clients, known).disconnect()
        srv.assert_alive()
        # the node still serves: a balancer keeps it, and sees the store's state
        h = srv.call("GET", "/health")
        assert h.status == 200 and h.json == {"status": "UP", "store": "DOWN"}, h
    finally:
        pg.ctl("resume")
    # back without a broker restart
    wait_for("REST again", lambda: srv.call(
        "POST", "/tenant/tenants", ADMIN,
        {"id": "after", "adminName": "admin", "adminPass": "tenant-secret-1"}).status == 201)
    assert srv.connack(clients, new) == 0
    assert pg.sql("SELECT count(*) FROM devices WHERE cn = 'late-1'") == "1"
    assert pg.sql("SELECT count(*) FROM tenants WHERE id = 'during'") == "0"
    assert "connected again to postgresql" in srv.stderr()
    assert srv.call("GET", "/health").json == {"status": "UP", "store": "UP"}


def serve_once(tmp_path, store):
    conf = tmp_path / "certmq.conf"
    conf.write_text(f"data_dir {tmp_path / 'var'}\nstore {store}\n\n"
                    f"listener {free_port()} 127.0.0.1\nprotocol http\n")
    return subprocess.run([CERTMQ_BIN, "serve", "--config", str(conf)], capture_output=True,
                          text=True, timeout=3 * TIMEOUT, stdin=subprocess.DEVNULL)


def test_a_store_that_is_neither_sqlite_nor_postgresql_is_refused(tmp_path):
    r = serve_once(tmp_path, "mysql://root@127.0.0.1/certmq")
    assert r.returncode == 2, r.stderr
    assert "store must be sqlite or a postgresql:// URI" in r.stderr, r.stderr
    assert not (tmp_path / "var" / "certmq.db").exists()


def test_an_unreachable_postgresql_stops_the_start_and_hides_the_password(tmp_path):
    r = serve_once(tmp_path, "postgresql://certmq:n0t-logged-pw@127.0.0.1:1/certmq")
    assert r.returncode != 0, r.stderr
    assert "127.0.0.1:1/certmq unavailable" in r.stderr, r.stderr
    assert "n0t-logged-pw" not in r.stderr + r.stdout
