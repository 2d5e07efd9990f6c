# The refusal checks of the suite tell a refusal from a dropped connection:
# against a stand-in server that closes without a CONNACK (what a crash looks
# like to a client) they fail, against one that answers CONNACK rc they pass
# only for that rc. Checked with the real clients the suite uses (paho,
# mosquitto_pub); no broker needed.
import socket
import threading

import pytest

from conftest import Client, assert_mosquitto_refused, mosquitto_pub


class StandIn:
    """Accepts connections on a free port; each reads the CONNECT and then
    gets `answer` (b"" for none) before the server closes it."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(4096)
                    if self.answer:
                        conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def stand_in():
    made = []

    def make(answer):
        s = StandIn(answer)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_paho_connect_fails_when_closed_without_connack(stand_in, clients):
    s = stand_in(b"")
    for expect in (5, None):
        with pytest.raises(AssertionError, match="without a CONNACK"):
            clients("closed").connect(s.port, expect_rc=expect)


def test_paho_connect_checks_the_refusal_code(stand_in, clients):
    s = stand_in(b"\x20\x02\x00\x05")
    assert clients("five").connect(s.port, expect_rc=5) == 5
    with pytest.raises(AssertionError, match="CONNACK rc 5, want 4"):
        clients("four").connect(s.port, expect_rc=4)


def test_mosquitto_refusal_check_fails_when_closed_without_connack(stand_in):
    r = mosquitto_pub(stand_in(b"").port, "t", "m", client_id="closed")
    assert r.returncode != 0  # the check this replaces would have passed
    with pytest.raises(AssertionError, match="no CONNACK 5 refusal"):
        assert_mosquitto_refused(r, 5)


def test_mosquitto_refusal_check_checks_the_code(stand_in):
    r = mosquitto_pub(stand_in(b"\x20\x02\x00\x05").port, "t", "m", client_id="five")
    assert_mosquitto_refused(r, 5)
    with pytest.raises(AssertionError, match="no CONNACK 4 refusal"):
        assert_mosquitto_refused(r, 4)
