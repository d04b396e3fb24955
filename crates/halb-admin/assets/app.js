// halb dashboard. Polls GET /api/v1/status every POLL_MS and renders the
// listeners, pools and backends. Rows are updated in place, so a button is
// the same element from one poll to the next. Requests per second and error
// rate are computed here, from the counters' deltas between polls.
//
// With `[admin] token` set, every API call carries `Authorization: Bearer`
// with the token from `?token=` in the page's URL (then kept in this tab's
// sessionStorage and removed from the address bar), or typed into the form
// the page shows when the API answers 401.
'use strict';

(() => {
  const POLL_MS = 500;
  /** Rates are measured over about this long: steady, yet quick to move. */
  const RATE_WINDOW_MS = 2000;
  /** Req/s points kept per backend for its sparkline (30 s). */
  const HISTORY_POINTS = 60;
  /** The sparkline's width in CSS pixels (style.css: .spark). */
  const SPARK_WIDTH = 72;
  const REQUEST_TIMEOUT_MS = 3000;
  const MAX_ACTION_MESSAGES = 4;
  const TOKEN_KEY = 'halb-admin-token';

  const STATE_HELP = {
    up: 'Passing its health checks: gets traffic',
    down: 'Failing its health checks: gets no traffic',
    draining: 'Drained by an operator: no new traffic, in-flight work finishes',
    disabled: 'Disabled by an operator: gets no traffic',
    ejected: 'Ejected by outlier detection after failures in a row: no traffic for a while',
  };
  const ACTIONS = [
    { action: 'drain', label: 'Drain', help: 'No new traffic; in-flight work finishes' },
    { action: 'disable', label: 'Disable', help: 'No traffic at all' },
    { action: 'enable', label: 'Enable', help: 'Back to serving (if its checks pass)' },
  ];

  /** The backend table's columns: the same widths in every pool. */
  const COLUMNS = [
    { key: 'backend', title: 'Backend' },
    { key: 'state', title: 'State' },
    { key: 'weight', title: 'Weight', num: true },
    { key: 'rps', title: 'Req/s', num: true },
    { key: 'trend', title: 'Last 30 s', help: 'Requests per second over the last 30 s' },
    { key: 'errors', title: 'Errors', num: true },
    { key: 'latency', title: 'Latency', num: true },
    { key: 'in-flight', title: 'In flight', num: true },
    { key: 'requests', title: 'Requests', num: true },
    { key: 'failures', title: 'Failures', num: true },
    { key: 'ejections', title: 'Ejections', num: true },
    { key: 'check', title: 'Last check' },
    { key: 'actions', title: 'Actions' },
  ];

  const $ = (id) => document.getElementById(id);

  let token = takeToken();
  let polls = 0;
  let polling = false;
  let pollAgain = false;
  let pollTimer = 0;
  let lastSuccess = 0;
  let listenersKey = '';
  let actionMessages = 0;

  /** pool name -> { section, tbody, stats, rows: Map(address -> row) } */
  const pools = new Map();

  // ---- API ---------------------------------------------------------------

  function takeToken() {
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get('token');
    if (fromUrl !== null) {
      try { sessionStorage.setItem(TOKEN_KEY, fromUrl); } catch (_) { /* storage off */ }
      params.delete('token');
      const rest = params.toString();
      history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
      return fromUrl;
    }
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, json) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    if (json !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        cache: 'no-store',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const why = err && err.name === 'TimeoutError' ? 'no answer within ' + REQUEST_TIMEOUT_MS / 1000 + ' s' : 'halb is unreachable';
      throw new ApiError(why, 0);
    }
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const message = body && typeof body.error === 'string' ? body.error : 'HTTP ' + response.status;
      throw new ApiError(message, response.status);
    }
    return body;
  }

  /** The server compares path segments as written: keep `:` `[` `]` as is. */
  function segment(text) {
    return encodeURIComponent(text).replace(/%3A/gi, ':').replace(/%5B/gi, '[').replace(/%5D/gi, ']');
  }

  // ---- polling -------------------------------------------------------------

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(pollTimer);
    try {
      const status = await api('GET', '/api/v1/status');
      lastSuccess = Date.now();
      render(status, performance.now());
      removeMessage('poll');
      $('token-form').hidden = true;
      setLive('ok');
    } catch (err) {
      if (err.status === 401) {
        $('token-form').hidden = false;
        setMessage('poll', 'halb refused the status request: ' + err.message +
          '. Open this page as /?token=… or enter the token below.');
      } else {
        setMessage('poll', 'Cannot read /api/v1/status: ' + err.message);
      }
      setLive('down', err.message);
    } finally {
      polls += 1;
      document.body.dataset.polls = String(polls);
      polling = false;
      pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
      pollAgain = false;
    }
  }

  function setLive(state, detail) {
    const live = $('live');
    live.dataset.live = state;
    if (state === 'ok') {
      $('live-text').textContent = 'live';
      live.title = 'The page asks halb for its status every ' + POLL_MS + ' ms';
      $('updated').textContent = 'Updated ' + new Date(lastSuccess).toLocaleTimeString() + '.';
    } else {
      const since = lastSuccess ? ' · last update ' + new Date(lastSuccess).toLocaleTimeString() : '';
      $('live-text').textContent = 'no answer' + since;
      live.title = detail || '';
    }
  }

  // ---- messages --------------------------------------------------------------

  function setMessage(key, text, dismissable) {
    let item = $('messages').querySelector('[data-key="' + key + '"]');
    if (!item) {
      item = h('div', { class: 'message', 'data-key': key },
        h('span', { class: 'icon', text: '!' }),
        h('span', { class: 'text' }));
      if (dismissable) {
        item.append(h('button', {
          class: 'dismiss', type: 'button', title: 'Dismiss', 'aria-label': 'Dismiss',
          text: '×', onclick: () => item.remove(),
        }));
      }
      $('messages').append(item);
    }
    item.querySelector('.text').textContent = text;
  }

  function removeMessage(key) {
    const item = $('messages').querySelector('[data-key="' + key + '"]');
    if (item) item.remove();
  }

  function actionError(text) {
    actionMessages += 1;
    setMessage('action-' + actionMessages, text, true);
    const shown = $('messages').querySelectorAll('[data-key^="action-"]');
    for (let i = 0; i < shown.length - MAX_ACTION_MESSAGES; i++) shown[i].remove();
  }

  // ---- rendering -----------------------------------------------------------

  function h(tag, attrs, ...children) {
    const svg = tag === 'svg' || tag === 'polyline' || tag === 'polygon';
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') el.setAttribute('class', value);
      else if (name === 'text') el.textContent = value;
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) el.append(child);
    return el;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function render(status, now) {
    setText($('version'), status.version ? 'v' + status.version : '');
    renderListeners(status.listeners || []);
    renderFaults(status.faults || []);
    const totals = { rps: 0, requests: 0, failures: 0, measured: false, inFlight: 0, up: 0, backends: 0, retries: 0 };
    const seen = new Set();
    const container = $('pools');
    (status.pools || []).forEach((pool, index) => {
      seen.add(pool.name);
      const view = pools.get(pool.name) || createPool(pool.name);
      if (container.children[index] !== view.section) container.insertBefore(view.section, container.children[index] || null);
      renderPool(view, pool, now, totals);
    });
    for (const [name, view] of pools) {
      if (!seen.has(name)) {
        view.section.remove();
        pools.delete(name);
      }
    }
    setText($('total-rps'), totals.measured ? formatRate(totals.rps) : '–');
    setErrorRate($('total-errors'), totals.measured ? errorRate(totals.failures, totals.requests) : null);
    setText($('total-in-flight'), formatCount(totals.inFlight));
    setText($('total-up'), totals.up + ' / ' + totals.backends);
    $('total-up').dataset.level = totals.up === totals.backends ? 'ok' : totals.up === 0 ? 'bad' : 'warn';
    setText($('total-retries'), formatCount(totals.retries));
  }

  // Active faults (POST /api/v1/faults), each with its countdown.
  function renderFaults(faults) {
    $('faults-card').hidden = faults.length === 0;
    const tbody = $('faults').tBodies[0];
    tbody.replaceChildren(...faults.map((f) => h('tr', { 'data-fault': f.id },
      h('td', {}, h('span', { class: 'chip fault', text: f.kind + (f.value === null || f.value === undefined ? '' : ' ' + f.value) })),
      h('td', {}, h('a', { href: '#pool-' + f.pool, text: f.pool })),
      h('td', { class: 'mono', text: f.backend || 'all' }),
      h('td', { class: 'num', text: f.percent + ' %' }),
      h('td', { class: 'num', text: formatCount(f.applied || 0) }),
      h('td', { class: 'num countdown', text: Math.ceil(f.remaining_s) + ' s' }))));
  }

  function renderListeners(listeners) {
    const key = JSON.stringify(listeners);
    if (key === listenersKey) return;
    listenersKey = key;
    const tbody = $('listeners').tBodies[0];
    tbody.replaceChildren(...listeners.map((l) => h('tr', { 'data-listener': l.name },
      h('td', { class: 'strong', text: l.name }),
      h('td', {}, h('span', { class: 'chip', text: String(l.protocol).toUpperCase() })),
      h('td', { class: 'mono', text: l.bind }),
      h('td', {}, h('a', { href: '#pool-' + l.pool, text: l.pool })))));
    if (listeners.length === 0) {
      tbody.append(h('tr', {}, h('td', { colspan: 4, class: 'empty', text: 'No listeners.' })));
    }
  }

  function createPool(name) {
    const stat = (label, role) => h('div', { class: 'stat' },
      h('span', { class: 'label', text: label }), h('span', { class: 'value', 'data-role': role, text: '–' }));
    const stats = h('div', { class: 'stats' },
      stat('req/s', 'rps'), stat('errors', 'errors'), stat('up', 'up'),
      stat('retries', 'retries'), stat('retries denied', 'retries-denied'));
    const tbody = h('tbody');
    const section = h('section', { class: 'card pool', id: 'pool-' + name, 'data-pool': name },
      h('div', { class: 'pool-head' },
        h('h2', {}, h('span', { class: 'muted', text: 'pool ' }), h('span', { text: name })),
        h('span', { class: 'chip', 'data-role': 'algorithm' }),
        h('span', { class: 'chip danger', 'data-role': 'panic', hidden: true, text: 'panic mode',
          title: 'Too few backends left: outlier ejections are ignored' }),
        h('span', { class: 'chip', 'data-role': 'levels', hidden: true,
          title: 'Share of new traffic each priority level takes now' }),
        h('span', { class: 'chip', 'data-role': 'zone', hidden: true,
          title: 'Share of new traffic kept in this node\'s zone' }),
        stats),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'grid backends' },
          h('colgroup', {}, ...COLUMNS.map((c) => h('col', { class: 'col-' + c.key }))),
          h('thead', {}, h('tr', {}, ...COLUMNS.map((c) => h('th', { class: c.num ? 'num' : c.key, text: c.title, title: c.help || '' })))),
          tbody)));
    const view = { name, section, tbody, stats, rows: new Map() };
    pools.set(name, view);
    return view;
  }

  function renderPool(view, pool, now, totals) {
    const field = (role) => view.section.querySelector('[data-role="' + role + '"]');
    setText(field('algorithm'), pool.algorithm);
    field('panic').hidden = !pool.panic;
    view.section.dataset.panic = String(Boolean(pool.panic));
    const levels = pool.levels || [];
    field('levels').hidden = levels.length < 2;
    setText(field('levels'), levels.map((l) => 'level ' + l.priority + ' ' + l.percent + '%').join(' · '));
    const local = pool.local_zone_percent;
    const zoneChip = field('zone');
    zoneChip.hidden = local === null || local === undefined;
    zoneChip.classList.toggle('danger', local !== null && local !== undefined && local < 100);
    setText(zoneChip, 'zone ' + (pool.zone || '') + ': ' + local + '% local');

    let rps = 0;
    let requests = 0;
    let failures = 0;
    let measured = false;
    let up = 0;
    const seen = new Set();
    const backends = pool.backends || [];
    for (const placeholder of view.tbody.querySelectorAll('tr.empty-row')) placeholder.remove();
    const measures = backends.map((b) => measure(pool.name, b, now));
    const peak = Math.max(1, ...measures.map((m) => maxOf(m.history)));
    backends.forEach((backend, index) => {
      seen.add(backend.address);
      const row = view.rows.get(backend.address) || createRow(view, pool.name, backend.address);
      if (view.tbody.children[index] !== row.tr) view.tbody.insertBefore(row.tr, view.tbody.children[index] || null);
      const m = measures[index];
      renderRow(row, backend, m, peak);
      if (m.rate) {
        measured = true;
        rps += m.rate.rps;
        requests += m.rate.requests;
        failures += m.rate.failures;
      }
      if (backend.state === 'up') up += 1;
      totals.inFlight += backend.in_flight || 0;
    });
    for (const [address, row] of view.rows) {
      if (!seen.has(address)) {
        row.tr.remove();
        view.rows.delete(address);
      }
    }
    if (backends.length === 0) {
      view.tbody.append(h('tr', { class: 'empty-row' }, h('td', { colspan: 12, class: 'empty', text: 'No backends.' })));
    }

    const stat = (role) => view.stats.querySelector('[data-role="' + role + '"]');
    setText(stat('rps'), measured ? formatRate(rps) : '–');
    setErrorRate(stat('errors'), measured ? errorRate(failures, requests) : null);
    setText(stat('up'), up + ' / ' + backends.length);
    stat('up').dataset.level = up === backends.length ? 'ok' : up === 0 ? 'bad' : 'warn';
    setText(stat('retries'), formatCount(pool.retries || 0));
    setText(stat('retries-denied'), formatCount(pool.retries_denied || 0));

    totals.rps += rps;
    totals.requests += requests;
    totals.failures += failures;
    totals.measured = totals.measured || measured;
    totals.up += up;
    totals.backends += backends.length;
    totals.retries += pool.retries || 0;
  }

  /** Samples and req/s history per backend, keyed by pool and address. */
  const samples = new Map();

  function measure(poolName, backend, now) {
    const key = poolName + '\u0000' + backend.address;
    let entry = samples.get(key);
    if (!entry) {
      entry = { points: [], history: [] };
      samples.set(key, entry);
    }
    const points = entry.points;
    const last = points[points.length - 1];
    if (last && (backend.requests < last.requests || backend.failures < last.failures)) {
      // The counters started over (a restarted halb): rates start over too.
      points.length = 0;
      entry.history.length = 0;
    }
    points.push({ t: now, requests: backend.requests, failures: backend.failures });
    // Keep the newest sample at least RATE_WINDOW_MS old as the base.
    while (points.length > 2 && now - points[1].t >= RATE_WINDOW_MS) points.shift();
    let rate = null;
    if (points.length >= 2 && now > points[0].t) {
      const base = points[0];
      const requests = backend.requests - base.requests;
      rate = {
        rps: requests / ((now - base.t) / 1000),
        requests,
        failures: backend.failures - base.failures,
      };
      entry.history.push(rate.rps);
      if (entry.history.length > HISTORY_POINTS) entry.history.shift();
    }
    return { rate, history: entry.history };
  }

  function createRow(view, poolName, address) {
    const cell = (role, cls) => h('td', { class: cls, 'data-role': role });
    const spark = h('polyline', { points: '' });
    const sparkArea = h('polygon', { points: '' });
    const buttons = ACTIONS.map(({ action, label, help }) => h('button', {
      type: 'button', class: 'action ' + action, 'data-action': action, title: help, text: label,
    }));
    const weight = h('input', {
      type: 'number', min: '0', max: '1000', step: '1', class: 'weight', 'data-role': 'weight',
      title: 'Weight (0 to 1000): Enter sets it until the next reload', 'aria-label': 'Weight of ' + address,
    });
    const tr = h('tr', { class: 'backend', 'data-pool': poolName, 'data-backend': address, 'data-state': '' },
      h('td', { class: 'address', title: address }, h('span', { class: 'mono', text: address }),
        h('span', { class: 'chip backup', 'data-role': 'backup', hidden: true, text: 'backup',
          title: 'Gets traffic only when no primary backend is usable' }),
        h('span', { class: 'chip level', 'data-role': 'level', hidden: true,
          title: 'Priority level: serves when the levels before it are short of healthy weight' }),
        h('span', { class: 'chip zone', 'data-role': 'backend-zone', hidden: true })),
      h('td', {}, h('span', { class: 'badge', 'data-role': 'state' })),
      h('td', { class: 'num' }, weight),
      cell('rps', 'num'),
      h('td', { class: 'trend' },
        h('svg', { class: 'spark', viewBox: '0 0 ' + SPARK_WIDTH + ' 18', preserveAspectRatio: 'none', 'aria-hidden': 'true' }, sparkArea, spark)),
      cell('errors', 'num'),
      cell('latency', 'num'),
      cell('in-flight', 'num'),
      cell('requests', 'num'),
      cell('failures', 'num'),
      cell('ejections', 'num'),
      cell('check', 'check'),
      h('td', { class: 'actions' }, h('div', { class: 'buttons' }, ...buttons)));
    const row = { tr, poolName, address, spark, sparkArea, buttons, weight, busy: false, state: '' };
    for (const button of buttons) {
      button.addEventListener('click', () => act(row, button.dataset.action));
    }
    weight.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') setWeight(row, true);
      if (event.key === 'Escape') { weight.value = weight.dataset.current || ''; weight.blur(); }
    });
    // Leaving the field sets what was typed; an emptied field just goes back.
    weight.addEventListener('change', () => setWeight(row, false));
    view.rows.set(address, row);
    return row;
  }

  function renderRow(row, backend, m, peak) {
    const field = (role) => row.tr.querySelector('[data-role="' + role + '"]');
    applyState(row, backend.state);
    // Not while the operator is typing a new weight.
    if (document.activeElement !== row.weight && !row.weightBusy) row.weight.value = String(backend.weight);
    row.weight.dataset.current = String(backend.weight);
    field('backup').hidden = !backend.backup;
    field('level').hidden = backend.backup || !backend.priority;
    setText(field('level'), 'level ' + backend.priority);
    field('backend-zone').hidden = !backend.zone;
    setText(field('backend-zone'), backend.zone ? 'zone ' + backend.zone : '');
    field('backend-zone').title = backend.local ? 'In this node\'s zone' : 'In another zone than this node';
    row.tr.dataset.priority = String(backend.priority);
    row.tr.dataset.zone = backend.zone || '';
    setText(field('rps'), m.rate ? formatRate(m.rate.rps) : '–');
    row.tr.dataset.rps = m.rate ? m.rate.rps.toFixed(2) : '';
    setErrorRate(field('errors'), m.rate ? errorRate(m.rate.failures, m.rate.requests) : null);
    // A backend that gets no traffic has no latency to speak of: its last
    // one would be stale.
    const idle = backend.state === 'down' || backend.state === 'disabled' || backend.state === 'ejected';
    setText(field('latency'), idle ? '–' : formatLatency(backend.latency_ms));
    setText(field('in-flight'), formatCount(backend.in_flight || 0));
    setText(field('requests'), formatCount(backend.requests || 0));
    setText(field('failures'), formatCount(backend.failures || 0));
    field('failures').dataset.level = backend.failures > 0 ? 'warn' : '';
    setText(field('ejections'), formatCount(backend.ejections || 0));
    const check = backend.check || '';
    setText(field('check'), check || '–');
    field('check').title = check;
    field('check').dataset.level = check.startsWith('failed') ? 'bad' : '';
    drawSpark(row, m.history, peak);
  }

  function applyState(row, state) {
    row.state = state;
    row.tr.dataset.state = state;
    const badge = row.tr.querySelector('[data-role="state"]');
    setText(badge, state);
    badge.dataset.state = state;
    badge.title = STATE_HELP[state] || '';
    updateButtons(row);
  }

  function updateButtons(row) {
    for (const button of row.buttons) {
      const action = button.dataset.action;
      const already = (action === 'drain' && row.state === 'draining') ||
        (action === 'disable' && row.state === 'disabled') ||
        (action === 'enable' && row.state !== 'draining' && row.state !== 'disabled');
      button.disabled = row.busy || already;
    }
  }

  function drawSpark(row, history, peak) {
    const n = history.length;
    if (n < 2) {
      row.spark.setAttribute('points', '');
      row.sparkArea.setAttribute('points', '');
      return;
    }
    const step = SPARK_WIDTH / (HISTORY_POINTS - 1);
    const x0 = SPARK_WIDTH - (n - 1) * step;
    const pts = history.map((v, i) => (x0 + i * step).toFixed(1) + ',' + (17 - (v / peak) * 15).toFixed(1));
    row.spark.setAttribute('points', pts.join(' '));
    row.sparkArea.setAttribute('points', x0.toFixed(1) + ',18 ' + pts.join(' ') + ' ' + SPARK_WIDTH + ',18');
  }

  // ---- actions -------------------------------------------------------------

  async function act(row, action) {
    if (row.busy) return;
    row.busy = true;
    updateButtons(row);
    const path = '/api/v1/pools/' + segment(row.poolName) + '/backends/' + segment(row.address) + '/' + action;
    try {
      const backend = await api('POST', path);
      if (backend && backend.state) applyState(row, backend.state);
    } catch (err) {
      const label = ACTIONS.find((a) => a.action === action).label;
      actionError(label + ' ' + row.address + ' (pool ' + row.poolName + ') failed: ' + err.message);
    } finally {
      row.busy = false;
      updateButtons(row);
      poll();
    }
  }

  async function setWeight(row, entered) {
    const text = row.weight.value.trim();
    if (row.weightBusy || text === row.weight.dataset.current) return;
    if (text === '' && !entered) {
      if (document.activeElement !== row.weight) row.weight.value = row.weight.dataset.current || '';
      return;
    }
    const weight = Number(text);
    if (text === '' || !Number.isInteger(weight) || weight < 0 || weight > 1000) {
      actionError('Weight of ' + row.address + ' (pool ' + row.poolName + '): expected a whole number from 0 to 1000, got "' + text + '"');
      row.weight.value = row.weight.dataset.current || '';
      return;
    }
    row.weightBusy = true;
    row.weight.disabled = true;
    const path = '/api/v1/pools/' + segment(row.poolName) + '/backends/' + segment(row.address) + '/weight';
    try {
      const backend = await api('POST', path, { weight });
      if (backend && backend.weight !== undefined) {
        row.weight.value = String(backend.weight);
        row.weight.dataset.current = String(backend.weight);
      }
    } catch (err) {
      actionError('Set weight of ' + row.address + ' (pool ' + row.poolName + ') failed: ' + err.message);
      row.weight.value = row.weight.dataset.current || '';
    } finally {
      row.weightBusy = false;
      row.weight.disabled = false;
      poll();
    }
  }

  // ---- formatting ----------------------------------------------------------

  const counts = new Intl.NumberFormat('en-US');

  function formatCount(n) {
    return counts.format(n);
  }

  function formatRate(rps) {
    if (rps < 0.05) return '0';
    if (rps < 10) return rps.toFixed(1);
    return counts.format(Math.round(rps));
  }

  function formatLatency(ms) {
    if (!ms) return '–';
    if (ms < 1) return ms.toFixed(2) + ' ms';
    if (ms < 100) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return Math.round(ms) + ' ms';
    return (ms / 1000).toFixed(2) + ' s';
  }

  function errorRate(failures, requests) {
    return requests > 0 ? failures / requests : null;
  }

  function setErrorRate(el, rate) {
    if (rate === null) {
      setText(el, '–');
      el.dataset.level = '';
      return;
    }
    const percent = rate * 100;
    setText(el, percent === 0 ? '0%' : percent < 0.1 ? '<0.1%' : percent.toFixed(1) + '%');
    el.dataset.level = percent === 0 ? '' : percent < 5 ? 'warn' : 'bad';
  }

  function maxOf(values) {
    let max = 0;
    for (const v of values) if (v > max) max = v;
    return max;
  }

  // ---- start -----------------------------------------------------------------

  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    token = $('token-input').value.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (_) { /* storage off */ }
    $('token-input').value = '';
    poll();
  });
  setInterval(() => {
    if (lastSuccess && Date.now() - lastSuccess > 3 * POLL_MS + REQUEST_TIMEOUT_MS) $('live').dataset.live = 'down';
  }, 1000);
  poll();
})();
