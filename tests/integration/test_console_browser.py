# The operator console in a real browser (issue 11): Debian's headless
# Chromium driven through chromium-driver and python3-selenium logs in,
# uploads a CA, sees it listed, turns auto-registration on, sees a device
# (paho over mutual TLS) in the live connections, sees a refused device's
# reason, disconnects the device from the page and bulk-registers a CSV;
# also the proof-of-possession flow, revocation through the CRL, tenant
# options and (as the management admin) creating a tenant.
# A screenshot of every page goes to the test's temp dir (and to docs/ when
# CERTMQ_SCREENSHOTS_TO_DOCS=1, the two the README shows).
import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TIMEOUT
from identity_pki import CA_PASS, assert_mosquitto_refused, pki, server_fixture  # noqa: F401

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (NoSuchElementException,  # noqa: E402
                                        StaleElementReferenceException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"
README_SHOTS = {"certificates", "devices"}
WEB = Path(__file__).resolve().parents[2] / "web"
server = server_fixture("console-browser", options={"console_dir": str(WEB)})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not shutil.which("chromedriver") or not shutil.which("chromium"):
        pytest.skip("chromium and chromium-driver are not installed (scripts/deps.sh)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1500,1000"):
        opts.add_argument(a)
    service = Service(executable_path=shutil.which("chromedriver"))
    d = webdriver.Chrome(service=service, options=opts)
    d.implicitly_wait(0)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("console-screenshots")

    def take(browser, name):
        path = d / f"console-{name}.png"
        browser.save_screenshot(str(path))
        assert path.stat().st_size > 1000
        if os.environ.get("CERTMQ_SCREENSHOTS_TO_DOCS") == "1" and name in README_SHOTS:
            shutil.copy(path, DOCS / path.name)
        return path

    return take


def wait(browser, cond, what):
    try:
        return WebDriverWait(browser, TIMEOUT, ignored_exceptions=(
            StaleElementReferenceException, NoSuchElementException, AttributeError)).until(cond)
    except Exception:
        msg = browser.find_element(By.ID, "message").text
        raise AssertionError(f"timed out waiting for {what}; page message: {msg!r}")


def text_of(browser, css):
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, css)]


def login(browser, server, tenant, user, password):
    browser.get(server.base + "/")
    for field, value in (("login-tenant", tenant), ("login-user", user),
                         ("login-password", password)):
        e = browser.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: d.find_element(By.ID, "page-certs").is_displayed(), "the certs page")


def go(browser, page):
    browser.find_element(By.ID, f"nav-{page}").click()
    wait(browser, lambda d: d.find_element(By.ID, f"page-{page}").is_displayed(), page)


def cert_row(browser, name):
    for row in browser.find_elements(By.CSS_SELECTOR, "#certs-table tbody tr"):
        if row.find_elements(By.TAG_NAME, "td") and row.find_element(By.TAG_NAME, "td").text == name:
            return row
    return None


@pytest.fixture(scope="module")
def tenant(server):
    return server.tenant("uia", password="ui-secret-12")  # ("uia/admin", password)


def test_wrong_password_shows_the_error(server, browser, tenant):
    browser.get(server.base + "/")
    browser.find_element(By.ID, "login-tenant").clear()
    browser.find_element(By.ID, "login-tenant").send_keys("uia")
    browser.find_element(By.ID, "login-password").send_keys("wrong-password")
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: "credentials" in d.find_element(By.ID, "message").text,
         "the 401 message")
    assert browser.find_element(By.ID, "page-login").is_displayed()
    assert browser.execute_script("return window.localStorage.length") == 0


def test_console_end_to_end(server, pki, browser, shots, clients, tenant, tmp_path):
    login(browser, server, "uia", "admin", "ui-secret-12")
    # Upload tenant A's CA with auto-registration off; a bad PEM first shows the server's text.
    browser.find_element(By.ID, "upload-name").send_keys("fleet CA")
    browser.find_element(By.ID, "upload-pem").send_keys("not a certificate")
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: "error" in d.find_element(By.ID, "message").get_attribute("class"),
         "the upload error")
    pem = browser.find_element(By.ID, "upload-pem")
    pem.clear()
    browser.execute_script("arguments[0].value = arguments[1]", pem,
                           Path(pki.ca_a.pem).read_text())
    browser.find_element(By.ID, "upload-submit").click()
    wait(browser, lambda d: cert_row(d, "fleet CA"), "the CA in the list")
    row = cert_row(browser, "fleet CA")
    assert row.find_element(By.CSS_SELECTOR, ".status").text == "ENABLED"
    assert row.find_element(By.CSS_SELECTOR, ".auto").text == "off"
    # Not registered and auto-registration off: refused.
    assert server.connack(clients, pki.a1) == 5
    row.find_element(By.CSS_SELECTOR, "button.toggle-auto").click()
    wait(browser, lambda d: cert_row(d, "fleet CA").find_element(By.CSS_SELECTOR, ".auto").text
         == "on", "auto-registration on")
    shots(browser, "certificates")

    # Proof of possession: the page shows the code, the CA key signs it, the page verifies.
    cert_row(browser, "fleet CA").find_element(By.CSS_SELECTOR, "button.pop").click()
    wait(browser, lambda d: d.find_element(By.ID, "pop-code").text.strip(), "the code")
    code = browser.find_element(By.ID, "pop-code").text.strip()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pki.ca_a.key), "-passin",
                          CA_PASS], input=code.encode(), capture_output=True, check=True).stdout
    browser.find_element(By.ID, "pop-signature").send_keys(base64.b64encode(sig).decode())
    browser.find_element(By.ID, "pop-verify").click()
    wait(browser, lambda d: d.find_element(By.ID, "pop-result").text.startswith("Verified"),
         "the verified proof")
    wait(browser, lambda d: "verified" == cert_row(d, "fleet CA").find_elements(
        By.TAG_NAME, "td")[5].text, "the PoP column")

    # A device connects (and registers itself); it shows in the live connections.
    dev = server.connect_device(clients, pki.a1)
    go(browser, "devices")
    wait(browser, lambda d: "a1" in text_of(d, "#conns-table tbody tr td:first-child"),
         "a1 in the live connections")
    shots(browser, "devices")

    # Revoke a1 through the tenant CRL (after the page's confirmation).
    browser.find_element(By.CSS_SELECTOR, '#conns-table tr[data-client="a1"] button.revoke').click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: "revoked" in d.find_element(By.ID, "message").text, "the revocation")
    r = server.call("GET", "/tenant/trusted-certificates/settings/crl", tenant)
    assert r.status == 200, r
    crl = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text"], input=r.body,
                         capture_output=True, check=True).stdout.decode().upper()
    assert pki.a1.serial_hex.upper().lstrip("0") in crl.replace(":", "")

    # A refused device: its reason is on the refusals page.
    assert_mosquitto_refused(server.mosquitto_pub(pki.a_expired, "t/x", "m"))
    go(browser, "refusals")
    wait(browser, lambda d: "expired" in text_of(d, "#refusals-table td.reason"),
         "the refusal's reason")
    browser.find_element(By.ID, "verify-pem").send_keys(Path(pki.a_expired.chain).read_text())
    browser.find_element(By.ID, "verify-submit").click()
    wait(browser, lambda d: "expired" in d.find_element(By.ID, "verify-result").text,
         "the chain check's reason")
    shots(browser, "refusals")

    # Disconnect from the page.
    go(browser, "devices")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR,
                                            '#conns-table tr[data-client="a1"] button.disconnect'),
         "the disconnect button")
    browser.find_element(By.CSS_SELECTOR, '#conns-table tr[data-client="a1"] button.disconnect').click()
    assert dev.disconnected.wait(TIMEOUT), "a1 still connected"
    wait(browser, lambda d: "Disconnected a1" in d.find_element(By.ID, "message").text,
         "the disconnect message")

    # Bulk registration with one bad row.
    csv = tmp_path / "devices.csv"
    csv.write_text("ID;AUTH_TYPE\nui-sensor-1;CERTIFICATES\nui-sensor-2;CERTIFICATES\n"
                   "bad/id;CERTIFICATES\n")
    go(browser, "bulk")
    browser.find_element(By.ID, "bulk-file").send_keys(str(csv))
    browser.find_element(By.ID, "bulk-submit").click()
    wait(browser, lambda d: "3 rows: 2 registered, 1 failed" in
         d.find_element(By.ID, "bulk-summary").text, "the bulk result")
    assert any("bad/id" in t for t in text_of(browser, "#bulk-table td"))
    shots(browser, "bulk")
    r = server.call("GET", "/devices?pageSize=100", ("uia/admin", "ui-secret-12"))
    assert {"ui-sensor-1", "ui-sensor-2", "a1"} <= {d["id"] for d in r.json["devices"]}

    # Tenant options.
    go(browser, "options")
    box = browser.find_element(By.ID, "opt-lifespan")
    box.clear()
    box.send_keys("100")
    browser.find_element(By.ID, "options-save").click()
    wait(browser, lambda d: "at least 300" in d.find_element(By.ID, "message").text,
         "the option error")
    box.clear()
    box.send_keys("3600")
    browser.find_element(By.ID, "options-save").click()
    wait(browser, lambda d: "3600" in text_of(d, "#options-table td"), "the saved option")
    shots(browser, "options")
    assert "Tenants" not in browser.find_element(By.ID, "nav").text


def test_management_admin_sees_tenants(server, browser, shots, tenant):
    from apiserver import ADMIN
    login(browser, server, "management", "admin", ADMIN[1])
    go(browser, "tenants")
    wait(browser, lambda d: "uia" in text_of(d, "#tenants-table td"), "the tenant list")
    browser.find_element(By.ID, "tenant-id").send_keys("uib")
    browser.find_element(By.ID, "tenant-pass").send_keys("uib-secret-12")
    browser.find_element(By.ID, "tenant-submit").click()
    wait(browser, lambda d: "uib" in text_of(d, "#tenants-table td"), "the new tenant")
    assert server.call("GET", "/user/currentUser", ("uib/admin", "uib-secret-12")).status == 200
    shots(browser, "tenants")
    # The management admin looks at tenant uia's certificates and refusals.
    browser.find_element(By.CSS_SELECTOR, 'button.view[data-tenant="uia"]').click()
    wait(browser, lambda d: cert_row(d, "fleet CA"), "uia's CA")
    assert browser.find_element(By.ID, "viewing-tenant").text == "uia"
    go(browser, "refusals")
    wait(browser, lambda d: "expired" in text_of(d, "#refusals-table td.reason"), "uia's refusals")
    browser.find_element(By.ID, "view-own").click()
    wait(browser, lambda d: cert_row(d, "fleet CA") is None and
         not d.find_element(By.ID, "viewing").is_displayed(), "the own tenant again")


def test_a_device_user_gets_nothing(server, browser, tenant):
    server.user("uia", ("uia/admin", "ui-secret-12"), "plain", "plain-secret-1")
    browser.get(server.base + "/")
    wait(browser, lambda d: d.find_element(By.ID, "page-login").is_displayed(), "the login page")
    for field, value in (("login-tenant", "uia"), ("login-user", "plain"),
                         ("login-password", "plain-secret-1")):
        e = browser.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: "may not administer" in d.find_element(By.ID, "message").text,
         "the refusal")
    assert not browser.find_element(By.ID, "nav").is_displayed()
