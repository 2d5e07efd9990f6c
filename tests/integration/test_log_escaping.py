# Log lines cannot be forged (issue 16 item 11): a ClientId or user name
# holding a newline, a terminal escape or a C1 control is written escaped,
# so every line of stderr is one whole event starting with its timestamp.
import re

from conftest import RawClient, connect_packet

BROKER_OPTIONS = {"allow_anonymous": "false", "log_level": "debug"}
BROKER_LISTENERS = ("plain",)

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) ")
FORGED = "2026-01-01T00:00:00.000Z WARN forged: admin password reset"


def refused_or_closed(broker, client_id, username):
    """Sends CONNECT; True when the broker answered with a CONNACK (and so
    wrote its refusal line before it), False when it closed the connection."""
    c = RawClient(broker.ports["plain"])
    try:
        c.send(connect_packet(client_id, username=username, password=b"pw"))
        try:
            ack = c.recv_packet()
        except EOFError:
            return False
        assert ack[:2] == b"\x20\x02" and ack[3] != 0, ack
        return True
    finally:
        c.close()


def test_newline_in_client_id_and_user_name_cannot_forge_a_line(broker):
    answered = refused_or_closed(broker, "evil\n" + FORGED, b"bob\n" + FORGED.encode())
    err = broker.stderr()
    lines = err.splitlines()
    assert lines, err
    for line in lines:
        assert LINE.match(line), f"a line that is not a whole event: {line!r}"
    assert not any(line.startswith(FORGED) for line in lines)
    if answered:
        assert "client=evil\\n" + FORGED in err, err


def test_terminal_escape_and_c1_controls_are_escaped(broker):
    answered = refused_or_closed(broker, b"esc\x1b[2J", b"u\xc2\x85\x7f")
    err = broker.stderr()
    assert "\x1b" not in err and "\x85" not in err and "\x7f" not in err
    if answered:
        assert "client=esc\\x1b[2J" in err, err
