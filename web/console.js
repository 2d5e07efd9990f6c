// certmq operator console. Plain JavaScript, no libraries. Every action is a
// call of the documented REST API (docs/openapi.yaml) carrying the Basic
// credentials in an Authorization header; they live in this closure only
// (no storage, no cookies, no URLs), so reloading the page logs out. Data is
// put into the page with textContent only, never parsed as HTML.
'use strict';

(function () {
  // view: the tenant the certificate, device and refusal pages show (the
  // management admin may pick another; options and bulk are the own tenant's).
  const session = { auth: null, tenant: '', user: '', roles: [], view: '' };
  const $ = (id) => document.getElementById(id);

  // ---- helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c === null || c === undefined ? '' : c);
    return e;
  }

  function show(text, isError) {
    const m = $('message');
    m.textContent = text;
    m.className = isError ? 'error' : 'info';
    m.hidden = !text;
  }

  function basic(tenant, user, password) {
    const bytes = new TextEncoder().encode(`${tenant}/${user}:${password}`);
    let bin = '';
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return 'Basic ' + btoa(bin);
  }

  // One REST call. body: an object (sent as JSON), FormData or a string.
  // Resolves to the parsed JSON (or null); rejects with the server's message.
  async function api(method, path, body) {
    const headers = { 'Authorization': session.auth, 'X-Requested-With': 'certmq-console',
                      'Accept': 'application/json' };
    let payload = body;
    if (body && !(body instanceof FormData) && typeof body !== 'string') {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    } else if (typeof body === 'string') {
      headers['Content-Type'] = 'text/plain';
    }
    const res = await fetch(path, { method, headers, body: payload, cache: 'no-store',
                                    credentials: 'omit' });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!res.ok) {
      const why = data && data.message ? data.message : `HTTP ${res.status}`;
      const err = new Error(`${method} ${path.split('?')[0]}: ${why}`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // Runs an action, showing its error (never swallowed) or its success text.
  async function act(fn, okText) {
    try {
      await fn();
      if (okText) show(okText, false);
      return true;
    } catch (e) {
      show(e.message, true);
      return false;
    }
  }

  function fill(tableId, rows) {
    const body = $(tableId).querySelector('tbody');
    body.replaceChildren(...rows);
    if (!rows.length) {
      const cols = $(tableId).querySelectorAll('thead th').length;
      body.append(el('tr', { class: 'empty' }, el('td', { colspan: String(cols) }, 'Nothing here')));
    }
  }

  function day(iso) { return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '-'; }
  const T = () => encodeURIComponent(session.view || session.tenant);
  const tq = () => (session.view ? `&tenant=${encodeURIComponent(session.view)}` : '');
  const isAdmin = () => session.roles.includes('ROLE_TENANT_ADMIN') || isManagement();
  const isManagement = () => session.tenant === 'management' &&
    session.roles.includes('ROLE_TENANT_MANAGEMENT_ADMIN');

  // ---- login

  async function login(ev) {
    ev.preventDefault();
    const tenant = $('login-tenant').value.trim(), user = $('login-user').value.trim();
    session.auth = basic(tenant, user, $('login-password').value);
    $('login-password').value = '';
    const ok = await act(async () => {
      const me = await api('GET', '/user/currentUser');
      session.roles = (me.effectiveRoles || []).map((r) => r.id);
      session.tenant = tenant;
      session.user = user;
      session.view = '';
      if (!isAdmin()) throw new Error('This user may not administer the tenant (no ROLE_TENANT_ADMIN)');
    });
    if (!ok) { session.auth = null; return; }
    show('', false);
    $('who-name').textContent = `${tenant}/${user}`;
    $('who').hidden = false;
    $('nav').hidden = false;
    $('nav-tenants').hidden = !isManagement();
    if (location.hash === '#certs') route(); else location.hash = '#certs';
  }

  function setView(tenant) {
    session.view = tenant === session.tenant ? '' : tenant;
    $('viewing').hidden = !session.view;
    $('viewing-tenant').textContent = session.view;
    location.hash = '#certs';
    route();
  }

  function logout() {
    session.auth = null;
    session.roles = [];
    session.view = '';
    $('viewing').hidden = true;
    $('who').hidden = true;
    $('nav').hidden = true;
    show('', false);
    location.hash = '';
    route();
  }

  // ---- trusted certificates

  async function loadCerts() {
    const data = await api('GET', `/tenant/tenants/${T()}/trusted-certificates?pageSize=2000`);
    const soon = Date.now() + 30 * 86400 * 1000;
    fill('certs-table', data.certificates.map((c) => {
      const expiring = Date.parse(c.notAfter) < soon;
      const fp = c.fingerprint;
      const enabled = c.status === 'ENABLED';
      return el('tr', { 'data-fingerprint': fp },
        el('td', {}, c.name), el('td', {}, c.subject), el('td', { class: 'mono' }, fp),
        el('td', { class: 'status' }, c.status),
        el('td', { class: 'auto' }, c.autoRegistrationEnabled ? 'on' : 'off'),
        el('td', {}, c.proofOfPossessionValid ? 'verified' : 'not verified'),
        el('td', { class: expiring ? 'warn' : '' }, day(c.notAfter),
          expiring ? ' (expires within 30 days)' : ''),
        el('td', { class: 'actions' },
          el('button', { class: 'toggle-status', onclick: () => updateCert(fp,
            { status: enabled ? 'DISABLED' : 'ENABLED' }) }, enabled ? 'Disable' : 'Enable'),
          el('button', { class: 'toggle-auto', onclick: () => updateCert(fp,
            { autoRegistrationEnabled: !c.autoRegistrationEnabled }) },
            c.autoRegistrationEnabled ? 'Auto-registration off' : 'Auto-registration on'),
          el('button', { class: 'pop', onclick: () => startPop(fp) }, 'Proof of possession'),
          el('button', { class: 'delete danger', onclick: () => deleteCert(fp, c.name) }, 'Delete')));
    }));
  }

  async function updateCert(fp, fields) {
    await act(async () => {
      await api('PUT', `/tenant/tenants/${T()}/trusted-certificates/${fp}`, fields);
      await loadCerts();
    }, 'Saved');
  }

  async function deleteCert(fp, name) {
    if (!window.confirm(`Delete trusted certificate "${name}" (${fp})? Devices it admitted are disconnected.`))
      return;
    await act(async () => {
      await api('DELETE', `/tenant/tenants/${T()}/trusted-certificates/${fp}`);
      await loadCerts();
    }, 'Deleted');
  }

  async function uploadCert(ev) {
    ev.preventDefault();
    await act(async () => {
      await api('POST', `/tenant/tenants/${T()}/trusted-certificates`, {
        name: $('upload-name').value.trim(),
        status: $('upload-enabled').checked ? 'ENABLED' : 'DISABLED',
        autoRegistrationEnabled: $('upload-auto').checked,
        certInPemFormat: $('upload-pem').value,
      });
      $('upload-form').reset();
      await loadCerts();
    }, 'Uploaded');
  }

  function readInto(file, textarea) {
    const r = new FileReader();
    r.onload = () => { textarea.value = r.result; };
    r.onerror = () => show(`Cannot read ${file.name}`, true);
    r.readAsText(file);
  }

  let popFp = null;
  async function startPop(fp) {
    await act(async () => {
      const c = await api('POST',
        `/tenant/tenants/${T()}/trusted-certificates-pop/${fp}/verification-code`);
      popFp = fp;
      $('pop-fp').textContent = fp;
      $('pop-code').textContent = c.proofOfPossessionUnsignedVerificationCode;
      $('pop-signature').value = '';
      $('pop-result').textContent = '';
      $('pop-panel').hidden = false;
    });
  }

  async function verifyPop() {
    await act(async () => {
      const c = await api('POST', `/tenant/tenants/${T()}/trusted-certificates-pop/${popFp}/pop`,
        { proofOfPossessionSignedVerificationCode: $('pop-signature').value.trim() });
      $('pop-result').textContent = c.proofOfPossessionValid ?
        'Verified: the tenant holds the CA key.' : 'Not verified.';
      await loadCerts();
    });
  }

  // ---- devices

  async function loadDevices() {
    const q = encodeURIComponent($('device-q').value.trim());
    const days = $('device-days').value.trim();
    const conns = await api('GET', `/devices/connections?pageSize=2000&q=${q}${tq()}`);
    fill('conns-table', conns.connections.map((c) => el('tr', { 'data-client': c.clientId },
      el('td', {}, c.clientId), el('td', {}, c.cn), el('td', {}, c.kind),
      el('td', {}, c.remoteAddress), el('td', {}, day(c.connectedSince)),
      el('td', {}, c.protocolVersion), el('td', {}, c.tlsVersion || 'none'),
      el('td', {}, c.cipher || '-'), el('td', {}, c.handshake), el('td', {}, day(c.notAfter)),
      el('td', { class: 'actions' },
        el('button', { class: 'disconnect', onclick: () => disconnect(c.clientId) }, 'Disconnect'),
        c.serialNumber && !session.view ? el('button', { class: 'revoke danger',
          onclick: () => revoke(c.clientId, c.serialNumber) }, 'Revoke') : ''))));
    const inv = await api('GET', `/devices?pageSize=2000&q=${q}${tq()}` +
      (days ? `&expiringWithinDays=${encodeURIComponent(days)}` : ''));
    fill('inventory-table', inv.devices.map((d) => el('tr', {},
      el('td', {}, d.id), el('td', {}, d.connected ? 'yes' : 'no'),
      el('td', {}, day(d.lastSeen)), el('td', {}, day(d.notAfter)))));
  }

  async function disconnect(clientId) {
    await act(async () => {
      await api('DELETE', `/devices/connections/${encodeURIComponent(clientId)}?${tq().slice(1)}`);
      await loadDevices();
    }, `Disconnected ${clientId}`);
  }

  async function revoke(clientId, serial) {
    if (!window.confirm(`Put serial ${serial} of ${clientId} on the tenant CRL?`)) return;
    await act(async () => {
      await api('PUT', '/tenant/trusted-certificates/settings/crl',
        { crls: [{ serialNumberInHex: serial, revocationDate: new Date().toISOString() }] });
      await loadDevices();
    }, `Serial ${serial} revoked (enforced when the tenant's CRL check is on)`);
  }

  // ---- refusals and chain check

  async function loadRefusals() {
    const data = await api('GET', `/devices/refusals?pageSize=1000${tq()}`);
    fill('refusals-table', data.refusals.map((r) => el('tr', {},
      el('td', {}, day(r.time)), el('td', {}, r.remoteAddress), el('td', {}, r.clientId),
      el('td', {}, r.cn), el('td', { class: 'mono' }, r.anchorFingerprint || '-'),
      el('td', { class: 'reason' }, r.reason))));
  }

  async function verifyChain(ev) {
    ev.preventDefault();
    await act(async () => {
      const v = await api('POST', '/tenant/trusted-certificates/verify-cert-chain',
        $('verify-pem').value);
      $('verify-result').textContent = v.isValid ?
        `Valid: CN ${v.commonName} in tenant ${v.tenantId}` :
        `Refused: ${v.reason}${v.detail ? ' (' + v.detail + ')' : ''}`;
      $('verify-result').className = v.isValid ? 'ok' : 'warn';
    });
  }

  // ---- bulk registration

  async function bulkUpload(ev) {
    ev.preventDefault();
    const f = $('bulk-file').files[0];
    if (!f) { show('Choose a CSV file first', true); return; }
    const form = new FormData();
    form.append('file', f, f.name);
    await act(async () => {
      const r = await api('POST', '/devicecontrol/bulkNewDeviceRequests', form);
      $('bulk-summary').textContent = `${r.numberOfAll} rows: ${r.numberOfSuccessful} registered, ` +
        `${r.numberOfFailed} failed`;
      fill('bulk-table', (r.failedCreationList || []).map((x) => el('tr', {},
        el('td', {}, String(x.line)), el('td', {}, x.deviceId), el('td', {}, x.bulkNewDeviceStatus),
        el('td', {}, x.failureReason))));
      $('bulk-table').hidden = false;
    });
  }

  // ---- tenant options

  const LIFESPAN = ['oauth.internal', 'device-token.lifespan.seconds'];
  const CRL = ['configuration', 'crl.offline.check.enabled'];

  async function loadOptions() {
    const data = await api('GET', '/tenant/options?pageSize=2000');
    const find = (c, k) => data.options.find((o) => o.category === c && o.key === k);
    const life = find(...LIFESPAN), crl = find(...CRL);
    $('opt-lifespan').value = life ? life.value : '';
    $('opt-crl').checked = !!crl && crl.value.toLowerCase() === 'true';
    fill('options-table', data.options.map((o) => el('tr', {},
      el('td', {}, o.category), el('td', {}, o.key), el('td', {}, o.value))));
  }

  async function saveOptions(ev) {
    ev.preventDefault();
    await act(async () => {
      const life = $('opt-lifespan').value.trim();
      if (life) await api('PUT', `/tenant/options/${LIFESPAN[0]}/${LIFESPAN[1]}`, { value: life });
      await api('PUT', `/tenant/options/${CRL[0]}/${CRL[1]}`,
        { value: $('opt-crl').checked ? 'true' : 'false' });
      await loadOptions();
    }, 'Options saved');
  }

  // ---- tenants (management tenant)

  async function loadTenants() {
    const data = await api('GET', '/tenant/tenants?pageSize=2000');
    fill('tenants-table', data.tenants.map((t) => el('tr', {},
      el('td', {}, t.id), el('td', {}, t.domain), el('td', {}, t.company), el('td', {}, t.status),
      el('td', { class: 'actions' },
        el('button', { class: 'view', 'data-tenant': t.id, onclick: () => setView(t.id) }, 'View')))));
  }

  async function createTenant(ev) {
    ev.preventDefault();
    const id = $('tenant-id').value.trim();
    await act(async () => {
      await api('POST', '/tenant/tenants', {
        id, domain: $('tenant-domain').value.trim() || `${id}.example`,
        company: $('tenant-company').value.trim() || id,
        adminName: $('tenant-admin').value.trim(), adminPass: $('tenant-pass').value,
      });
      $('tenant-form').reset();
      await loadTenants();
    }, `Tenant ${id} created`);
  }

  // ---- routing

  const pages = { certs: loadCerts, devices: loadDevices, refusals: loadRefusals,
                  bulk: null, options: loadOptions, tenants: loadTenants };

  function route() {
    let name = location.hash.replace('#', '');
    if (!session.auth) name = 'login';
    else if (!(name in pages) || (name === 'tenants' && !isManagement())) name = 'certs';
    for (const s of document.querySelectorAll('main > section'))
      s.hidden = s.id !== `page-${name}`;
    for (const a of document.querySelectorAll('#nav a'))
      a.classList.toggle('current', a.id === `nav-${name}`);
    if (pages[name]) act(pages[name]);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('view-own').addEventListener('click', () => setView(session.tenant));
    $('upload-form').addEventListener('submit', uploadCert);
    $('upload-file').addEventListener('change', (e) => {
      if (e.target.files[0]) readInto(e.target.files[0], $('upload-pem'));
    });
    const pem = $('upload-pem');
    pem.addEventListener('dragover', (e) => { e.preventDefault(); pem.classList.add('drop'); });
    pem.addEventListener('dragleave', () => pem.classList.remove('drop'));
    pem.addEventListener('drop', (e) => {
      e.preventDefault();
      pem.classList.remove('drop');
      if (e.dataTransfer.files[0]) readInto(e.dataTransfer.files[0], pem);
    });
    $('pop-verify').addEventListener('click', verifyPop);
    $('pop-close').addEventListener('click', () => { $('pop-panel').hidden = true; });
    $('device-search').addEventListener('submit', (e) => { e.preventDefault(); act(loadDevices); });
    $('devices-refresh').addEventListener('click', () => act(loadDevices));
    $('refusals-refresh').addEventListener('click', () => act(loadRefusals));
    $('verify-form').addEventListener('submit', verifyChain);
    $('bulk-form').addEventListener('submit', bulkUpload);
    $('options-form').addEventListener('submit', saveOptions);
    $('tenant-form').addEventListener('submit', createTenant);
    window.addEventListener('hashchange', () => { show('', false); route(); });
    route();
  });
})();
