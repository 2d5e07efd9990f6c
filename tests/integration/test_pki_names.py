# `certmq pki issue` refuses every device id the broker would refuse as a
# common name, with the broker's own reason text ("bad common name", what
# `pki verify` and the connect-time refusal log say), and writes nothing.
import re

import pytest

from test_pki import forge_device, ok, pki

BROKER_REFUSES = ["a+b", "a#", "+", "#", "a:b", "a/b", "tab\there"]


def broker_reason(tmp_path, ca, cn):
    """The reason the broker's chain policy gives for a certificate with CN cn."""
    chain = forge_device(ca, cn, tmp_path / "forged")
    r = pki("verify", chain, "--trust", ca / "ca.pem")
    assert r.returncode == 1, r.stdout + r.stderr
    m = re.search(r'"?(bad common name)"?', r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return m.group(1)


@pytest.fixture
def ca(tmp_path):
    d = tmp_path / "ca"
    ok("ca", "init", d, "--cn", "Names CA", "--key", "ec:P-256")
    return d


@pytest.mark.parametrize("cn", BROKER_REFUSES)
def test_issue_device_refuses_what_the_broker_refuses(tmp_path, ca, cn):
    reason = broker_reason(tmp_path, ca, cn)
    out = tmp_path / "devices"
    r = pki("issue", "device", "--ca", ca, "--cn", cn, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f'"{reason}"' in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("prefix", ["x+", "site#", "a:"])
def test_issue_batch_refuses_prefixes_the_broker_refuses(tmp_path, ca, prefix):
    out = tmp_path / "batch"
    r = pki("issue", "batch", "--ca", ca, "--count", "2", "--prefix", prefix, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    assert '"bad common name"' in r.stderr and prefix in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_issue_device_accepts_a_name_the_broker_accepts(tmp_path, ca):
    out = tmp_path / "devices"
    ok("issue", "device", "--ca", ca, "--cn", "pump-0042.site_a", "--out", out)
    r = pki("verify", out / "pump-0042.site_a.chain.pem", "--trust", ca / "ca.pem",
            "--client-id", "pump-0042.site_a")
    assert r.returncode == 0, r.stdout + r.stderr
