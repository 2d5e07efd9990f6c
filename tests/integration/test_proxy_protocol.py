# PROXY protocol v2 behind a real HAProxy (issue 9 item 6): a listener with
# `proxy_protocol true` takes the client's address from the header HAProxy's
# `send-proxy-v2` sends, so logs see the device, not the balancer; mutual TLS
# passes through HAProxy untouched and still ends in certmq; a connection
# without a valid header, or too slow to send one, is closed; the header may
# arrive in pieces; an HTTP listener cannot have the option. GET /health,
# which HAProxy checks, answers without credentials.
import json
import shutil
import socket
import struct
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import (CERTMQ_BIN, TIMEOUT, Broker, connect_packet, free_port, terminate,
                      unique_topic)

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy is not installed (scripts/deps.sh installs it)")

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(ip, port, dst_ip="127.0.0.1", dst_port=1883):
    body = socket.inet_aton(ip) + socket.inet_aton(dst_ip) + struct.pack(">HH", port, dst_port)
    return SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


@pytest.fixture(scope="module")
def node(tmp_path_factory, certs):
    b = Broker(tmp_path_factory.mktemp("proxied"), certs,
               {"log_level": "debug", "handshake_timeout": "2"},
               listeners=("plain", "mtls", "api"),
               listener_options={"plain": {"proxy_protocol": "true"},
                                 "mtls": {"proxy_protocol": "true"}})
    # The readiness probe of Broker.start connects without a header: the
    # broker closes those, which is what the probe needs anyway.
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory, node):
    d = tmp_path_factory.mktemp("haproxy")
    ports = {"plain": free_port(), "mtls": free_port()}
    cfg = d / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend plain
    bind 127.0.0.1:{ports["plain"]}
    default_backend plain
frontend mtls
    bind 127.0.0.1:{ports["mtls"]}
    default_backend mtls
backend plain
    option httpchk GET /health
    http-check expect status 200
    server n1 127.0.0.1:{node.ports["plain"]} send-proxy-v2 check port {node.ports["api"]} inter 500ms
backend mtls
    server n1 127.0.0.1:{node.ports["mtls"]} send-proxy-v2
backend wrongcheck
    option httpchk GET /no-such-health
    http-check expect status 200
    server n1 127.0.0.1:{node.ports["plain"]} send-proxy-v2 check port {node.ports["api"]} inter 500ms
""")
    log = d / "haproxy.log"
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"))
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", ports["plain"]), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "haproxy never listened"
            time.sleep(0.05)
    ports["log"] = log
    yield ports
    terminate(proc)


def test_a_client_behind_haproxy_is_seen_with_its_own_address(node, haproxy):
    got = []
    sub = mqtt.Client(client_id="proxied-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    # A loopback address of its own, which only the PROXY header can tell.
    sub.connect("127.0.0.1", haproxy["plain"], bind_address="127.0.0.5")
    local = sub.socket().getsockname()
    sub.loop_start()
    try:
        topic = unique_topic("pp")
        r = sub.subscribe(topic, qos=1)
        assert r[0] == mqtt.MQTT_ERR_SUCCESS
        node.wait_log(f"client proxied-sub connected from 127.0.0.5:{local[1]} ")
        deadline = time.monotonic() + TIMEOUT
        while not got:
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(haproxy["plain"]),
                            "-t", topic, "-q", "1", "-m", "through haproxy"], check=True,
                           timeout=TIMEOUT)
            time.sleep(0.2)
            assert time.monotonic() < deadline, "nothing arrived through haproxy"
        assert got[0] == b"through haproxy"
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_mutual_tls_passes_through_haproxy(node, haproxy, certs):
    topic = unique_topic("ppt")
    tls = ["--cafile", certs.ca_pem, "--cert", certs.device1_pem, "--key", certs.device1_key]
    sub = subprocess.Popen(["mosquitto_sub", "-h", "localhost", "-p", str(haproxy["mtls"]),
                            "-t", topic, "-C", "1", "-W", str(TIMEOUT), "-i", "pp-dev-sub"] + tls,
                           stdout=subprocess.PIPE, text=True)
    node.wait_log("client pp-dev-sub connected from 127.0.0.1:")
    subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(haproxy["mtls"]), "-t", topic,
                    "-m", "tls end to end"] + tls, check=True, timeout=TIMEOUT)
    out, _ = sub.communicate(timeout=TIMEOUT)
    assert out.strip() == "tls end to end"
    assert sub.returncode == 0


def test_a_connection_without_the_header_is_closed(node):
    seen = node.stderr().count("no valid PROXY protocol v2 header")
    s = socket.create_connection(("127.0.0.1", node.ports["plain"]), timeout=TIMEOUT)
    s.sendall(connect_packet("no-header"))
    try:
        answer = s.recv(16)
    except ConnectionResetError:  # closed with the CONNECT unread
        answer = b""
    assert answer == b"", "a CONNECT without a PROXY header was answered"
    s.close()
    node.wait_log("no valid PROXY protocol v2 header", seen)


def test_the_header_may_arrive_in_pieces(node):
    s = socket.create_connection(("127.0.0.1", node.ports["plain"]), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in v2_header("198.51.100.7", 4242):
        s.sendall(bytes([b]))
        time.sleep(0.005)
    s.sendall(connect_packet("pieces"))
    assert s.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
    node.wait_log("client pieces connected from 198.51.100.7:4242 ")
    s.close()


def test_a_silent_connection_is_closed_at_the_handshake_timeout(node):
    seen = node.stderr().count("PROXY header timeout")
    s = socket.create_connection(("127.0.0.1", node.ports["plain"]), timeout=TIMEOUT)
    s.sendall(SIG[:5])
    t0 = time.monotonic()
    assert s.recv(16) == b""
    assert time.monotonic() - t0 >= 1.5
    s.close()
    node.wait_log("PROXY header timeout", seen)


def test_proxy_protocol_on_an_http_listener_is_a_config_error(tmp_path):
    conf = tmp_path / "certmq.conf"
    conf.write_text(f"data_dir {tmp_path / 'var'}\nlistener {free_port()} 127.0.0.1\n"
                    "protocol http\nproxy_protocol true\n")
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(conf)], capture_output=True,
                       text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert "proxy_protocol is for MQTT listeners" in r.stderr


def test_health_answers_without_credentials_and_haproxy_checks_it(node, haproxy):
    r = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{node.ports['api']}/health"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200", r.stdout + r.stderr
    assert json.loads(body) == {"status": "UP", "store": "UP"}
    # HAProxy checks it: the backend checking a path that is not there goes
    # down, the one checking /health never does.
    log = haproxy["log"]
    deadline = time.monotonic() + TIMEOUT
    while "wrongcheck/n1 is DOWN" not in log.read_text():
        assert time.monotonic() < deadline, "haproxy's checks never ran:\n" + log.read_text()
        time.sleep(0.1)
    assert "plain/n1 is DOWN" not in log.read_text(), log.read_text()
