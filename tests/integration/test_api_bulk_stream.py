# REST API: the bulk-registration CSV is parsed while its body arrives, never
# held whole. A 40 MB upload (50,000 rows padded with blanks in an extra
# column) grows the process by a small fraction of its size; what the parser
# holds counts against http_max_body_total (a small table under a large body
# passes, a large table under a small body gets 503); an upload cut off
# mid-body registers nothing and leaves the broker serving.
import base64
import re
import socket
import subprocess
from pathlib import Path

import pytest

from apiserver import ApiServer, assert_json_error, make_tenant
from conftest import TIMEOUT

BULK = "/devicecontrol/bulkNewDeviceRequests"
BUDGET = 2 << 20  # http_max_body_total of the second server


def status_kb(pid, field):
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1))


def sanitized(pid):
    """ASan keeps freed memory in quarantine, so its RSS says nothing here."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def padded_csv(path, n, pad, prefix="s"):
    """n certificate devices; each row carries pad blanks in a NOTE column,
    which trims to an empty cell: bytes on the wire, nothing to keep."""
    with open(path, "w") as f:
        f.write("ID,AUTH_TYPE,NOTE\n")
        blanks = " " * pad
        for i in range(n):
            f.write(f"{prefix}{i:06d},CERTIFICATES,{blanks}\n")
    return path.stat().st_size


def user_count(api, tenant, auth):
    r = api.call("GET", f"/user/{tenant}/users?pageSize=1", auth)
    assert r.status == 200, r
    return r.json["statistics"]["totalPages"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-stream")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-budget"),
                  options={"http_max_body_total": str(BUDGET)}).start()
    yield s
    s.stop()


def upload_growth_kb(api, tenant, path):
    """Registers path's rows into a new tenant; returns the rise of the
    process's peak RSS (VmHWM) over its RSS before the upload."""
    auth = make_tenant(api, tenant)
    pid = api.proc.pid
    before = status_kb(pid, "VmRSS")
    r = api.call("POST", BULK, auth, files={"file": path}, timeout=120)
    assert r.status == 201, r
    assert r.json["numberOfCreated"] == 50000, r
    assert user_count(api, tenant, auth) == 50001
    return status_kb(pid, "VmHWM") - before


def test_a_40_mb_upload_grows_the_process_by_far_less_than_its_size(api, tmp_path):
    # The same 50,000 rows without padding (1 MB) first: what registering
    # them costs (the devices stay in the trust index).
    lean = padded_csv(tmp_path / "lean.csv", 50000, 0, prefix="l")
    lean_kb = upload_growth_kb(api, "lean", tmp_path / "lean.csv")
    size = padded_csv(tmp_path / "big.csv", 50000, 840)
    assert size > 40 << 20
    big_kb = upload_growth_kb(api, "big", tmp_path / "big.csv")
    print(f"50,000 rows: {lean} bytes grew the peak RSS {lean_kb} kB, {size} bytes {big_kb} kB")
    if sanitized(api.proc.pid):
        return
    assert big_kb * 1024 < size // 2, f"peak RSS grew {big_kb} kB for a {size} byte body"
    # The 42 MB of padding cost less than a tenth of their size beyond the rows.
    assert (big_kb - lean_kb) * 1024 < (size - lean) // 10, (lean_kb, big_kb)


def test_the_parsed_rows_count_against_the_body_budget(small_budget, tmp_path):
    auth = make_tenant(small_budget, "budget")
    # 8 MB of body, nearly four times the budget: the rows held are small, so it passes.
    assert padded_csv(tmp_path / "wide.csv", 10000, 800) > 3 * BUDGET
    r = small_budget.call("POST", BULK, auth, files={"file": tmp_path / "wide.csv"})
    assert r.status == 201 and r.json["numberOfCreated"] == 10000, r
    # 1.7 MB of body, under the budget, whose 40,000 rows hold more than it.
    dense = tmp_path / "dense.csv"
    with open(dense, "w") as f:
        f.write("ID,AUTH_TYPE\n")
        for i in range(40000):
            f.write(f"dense-{i:024d},CERTIFICATES\n")
    assert dense.stat().st_size < BUDGET
    r = small_budget.call("POST", BULK, auth, files={"file": dense})
    assert_json_error(r, 503)
    assert user_count(small_budget, "budget", auth) == 10001
    # What it held was given back: a small upload passes.
    (tmp_path / "one.csv").write_text("ID,AUTH_TYPE\nafter-503,CERTIFICATES\n")
    r = small_budget.call("POST", BULK, auth, files={"file": tmp_path / "one.csv"})
    assert r.status == 201 and r.json["numberOfCreated"] == 1, r


def multipart_body(csv_bytes, boundary="x-7d1f0a"):
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"d.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    return head + csv_bytes + f"\r\n--{boundary}--\r\n".encode(), boundary


def cut_upload(api, auth, body, boundary, keep, reset):
    """Sends the head and the first `keep` bytes of body, then closes the
    connection (with a reset when asked)."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=TIMEOUT)
    cred = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    s.sendall(f"POST {BULK} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {cred}\r\n"
              f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
              f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert s.recv(64).startswith(b"HTTP/1.1 100"), "the head was not accepted"
    s.sendall(body[:keep])
    if reset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_an_upload_cut_mid_body_registers_nothing(api, tmp_path):
    auth = make_tenant(api, "cut")
    size = padded_csv(tmp_path / "cut.csv", 20000, 100, prefix="cut")
    body, boundary = multipart_body((tmp_path / "cut.csv").read_bytes())
    cut_upload(api, auth, body, boundary, size // 2, reset=False)
    cut_upload(api, auth, body, boundary, size - 10, reset=True)
    cut_upload(api, auth, body, boundary, len(body) - 3, reset=False)  # all but the last "--\r\n"
    api.assert_alive()
    assert user_count(api, "cut", auth) == 1  # only its admin
    # The broker goes on serving: the same file, whole, registers every row.
    r = api.call("POST", BULK, auth, files={"file": tmp_path / "cut.csv"})
    assert r.status == 201 and r.json["numberOfCreated"] == 20000, r
    assert user_count(api, "cut", auth) == 20001


def test_a_multipart_body_without_a_file_part_or_with_bad_csv_is_refused(api, tmp_path):
    auth = make_tenant(api, "refuse")
    (tmp_path / "d.csv").write_text("ID,AUTH_TYPE\nr1,CERTIFICATES\n")
    r = api.call("POST", BULK, auth, files={"other": tmp_path / "d.csv"})
    assert_json_error(r, 400)
    (tmp_path / "bad.csv").write_text("ID,AUTH_TYPE\nr2,CERTIFICATES,extra\n")
    r = api.call("POST", BULK, auth, files={"file": tmp_path / "bad.csv"})
    assert_json_error(r, 422)
    # Not multipart: the body is the file.
    r = api.call("POST", BULK, auth, data=b"ID;AUTH_TYPE\nraw1;CERTIFICATES\n",
                 headers={"Content-Type": "text/csv"})
    assert r.status == 201 and r.json["numberOfCreated"] == 1, r
    assert user_count(api, "refuse", auth) == 2
