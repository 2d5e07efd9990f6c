# Helpers for the REST API tests (test_api_*.py): the real `certmq serve`
# started with one `protocol http` listener and its own data_dir, and a curl
# wrapper that returns status, parsed JSON and headers, as an operator's
# shell scripts would call the API.
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CERTMQ_BIN, SANITIZER_MARKERS, TIMEOUT, free_port

ADMIN_PASSWORD = "management-secret-1"
ADMIN = ("management/admin", ADMIN_PASSWORD)


class Response:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class ApiServer:
    """One running `certmq serve` whose config has a plain HTTP API listener."""

    def __init__(self, workdir, env=None, options=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "var"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        opts = {"data_dir": str(self.data)}
        opts.update(options or {})
        lines = [f"{k} {v}" for k, v in opts.items()]
        lines += ["", f"listener {self.port} 127.0.0.1", "protocol http"]
        self.conf = self.dir / "certmq.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.env = dict(os.environ)
        self.env.pop("CERTMQ_ADMIN_PASSWORD", None)
        self.env.update(env if env is not None else {"CERTMQ_ADMIN_PASSWORD": ADMIN_PASSWORD})
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.stdout_path = self.dir / f"stdout{self.starts}.log"
        self.stderr_path = self.dir / f"stderr{self.starts}.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([CERTMQ_BIN, "serve", "--config", str(self.conf)],
                                         cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"certmq exited with {self.proc.returncode}\n{self.stderr()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"HTTP listener never accepted\n{self.stderr()}")
                time.sleep(0.05)

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except (AttributeError, FileNotFoundError):
            return ""

    def assert_alive(self):
        """The process still runs (after a refusal: it refused, not crashed)."""
        assert self.proc is not None and self.proc.poll() is None, \
            f"certmq died (exit {self.proc.returncode if self.proc else None})\n{self.stderr()}"

    def kill(self):
        """SIGKILL: a crash, as far as the data dir can tell."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is not None:
            problems.append(f"certmq died during the tests (exit {self.proc.returncode})")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                if self.proc.wait(timeout=10) != 0:
                    problems.append(f"exit status {self.proc.returncode} after SIGTERM")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("did not exit within 10 s of SIGTERM")
        err = self.stderr()
        problems += [f"sanitizer report ({m!r})" for m in SANITIZER_MARKERS if m in err]
        self.proc = None
        if problems:
            pytest.fail("; ".join(problems) + f"\nstderr:\n{err[-20000:]}")

    def call(self, method, path, auth=None, json_body=None, data=None, files=None, headers=None,
             timeout=60):
        """One request with curl. auth: (user, password); files: {"file": path}."""
        out = self.dir / "curl.body"
        hdr = self.dir / "curl.headers"
        cmd = ["curl", "-sS", "-X", method, "-o", str(out), "-D", str(hdr), "-w", "%{http_code}",
               "--max-time", str(timeout)]
        if auth:
            cmd += ["-u", f"{auth[0]}:{auth[1]}"]
        for k, v in (headers or {}).items():
            cmd += ["-H", f"{k}: {v}"]
        if json_body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary",
                    json.dumps(json_body)]
        if data is not None:
            cmd += ["--data-binary", "@-"]
        for name, path_ in (files or {}).items():
            cmd += ["-F", f"{name}=@{path_}"]
        cmd.append(self.base + path)
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 5)
        assert r.returncode == 0, r.stderr.decode()
        headers_out = {}
        for line in hdr.read_text(errors="replace").splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers_out[k.strip().lower()] = v.strip()
        return Response(int(r.stdout.decode()), out.read_bytes(), headers_out)


def pem_json(path):
    """The certificate file's text, as an operator pastes it into JSON."""
    return Path(path).read_text()


def make_tenant(server, tenant_id, admin="admin", password="tenant-secret-1"):
    r = server.call("POST", "/tenant/tenants", ADMIN,
                    {"id": tenant_id, "domain": f"{tenant_id}.example", "company": tenant_id,
                     "adminName": admin, "adminPass": password})
    assert r.status == 201, r
    return (f"{tenant_id}/{admin}", password)


def upload_ca(server, tenant, auth, pem_path, auto=True, status="ENABLED", name="ca"):
    return server.call("POST", f"/tenant/tenants/{tenant}/trusted-certificates", auth,
                       {"status": status, "name": name,
                        "autoRegistrationEnabled": "true" if auto else "false",
                        "certInPemFormat": pem_json(pem_path)})


def assert_json_error(r, status):
    assert r.status == status, r
    body = r.json
    assert set(body) >= {"error", "message"}, body
    text = r.body.decode().lower()
    for leak in ("sqlite", "select ", "insert into", "constraint failed", "syntax error"):
        assert leak not in text, r
