// pgrelay demo client: one WebSocket, JSON frames {channel, id, payload},
// three colour bars and a rolling log. No dependencies, no build step.

const LOG_MAX = 50;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const STABLE_MS = 5_000; // an open connection this old resets the backoff

const stateEl = document.getElementById('state');
const urlEl = document.getElementById('url');
const logEl = document.getElementById('log');
const bars = new Map(
  [...document.querySelectorAll('.bar[data-color]')].map((el) => [el.dataset.color, el]),
);

// Well-known close codes get a readable word when the server sends no reason.
const CLOSE_NAMES = {
  1000: 'normal closure', 1001: 'going away', 1006: 'abnormal closure (no close frame)',
  1008: 'policy violation', 1011: 'server error', 1012: 'service restart',
  1013: 'try again later',
};

// The socket lives next to the page ("ws" relative to the page's directory), so
// the demo keeps working behind an ingress that mounts it under a path prefix.
// The page's own ?channel= params (repeatable) are passed through; default "data".
function socketURL(href) {
  const page = new URL(href);
  const channels = page.searchParams.getAll('channel').map((c) => c.trim()).filter(Boolean);
  const u = new URL('ws', page);
  for (const c of channels.length ? channels : ['data']) u.searchParams.append('channel', c);
  // http: -> ws:, https: -> wss:. A string swap, because the URL.protocol
  // setter silently refuses some scheme changes (e.g. from file:).
  return u.href.replace(/^http/, 'ws');
}

function setState(s) {
  stateEl.textContent = s;
  stateEl.dataset.state = s;
}

function clock() {
  return new Date().toTimeString().slice(0, 8);
}

// Every field goes in through textContent: payloads are untrusted text, never HTML.
function span(cls, text) {
  const el = document.createElement('span');
  el.className = cls;
  el.textContent = text;
  return el;
}

function prepend(li) {
  logEl.prepend(li);
  while (logEl.childElementCount > LOG_MAX) logEl.lastElementChild.remove();
}

// A frame from the server (notification or control frame): class "entry".
function logEntry(msg, control) {
  const li = document.createElement('li');
  li.className = control ? 'entry control' : 'entry';
  if (control) {
    li.dataset.type = String(msg.type);
    li.append(span('time', clock()), span('chan', 'control'), span('id', String(msg.type)),
      span('payload', JSON.stringify(msg)));
  } else {
    li.dataset.channel = msg.channel;
    li.dataset.id = msg.id;
    li.append(span('time', clock()), span('chan', msg.channel), span('id', '#' + msg.id),
      span('payload', msg.payload));
  }
  prepend(li);
}

// A connection event (open/close/retry): class "event", so it never counts as a message.
function logEvent(text, kind) {
  const li = document.createElement('li');
  li.className = 'event ' + kind;
  li.append(span('time', clock()), span('text', text));
  prepend(li);
}

function hit(el) {
  const n = Number(el.dataset.count) + 1;
  el.dataset.count = String(n);
  el.querySelector('.bar-count').textContent = String(n);
  // Widths are relative to the busiest bar, so every bar is rescaled.
  const max = Math.max(...[...bars.values()].map((b) => Number(b.dataset.count)));
  for (const b of bars.values()) {
    b.querySelector('.bar-fill').style.width = `${(100 * Number(b.dataset.count)) / max}%`;
  }
  // Restart the pulse even if the previous one is still running: drop the
  // class, force a reflow, add it back. Repeated NOTIFYs each flash visibly.
  el.classList.remove('pulse');
  void el.offsetWidth;
  el.classList.add('pulse');
}

function onFrame(ev) {
  let msg;
  try {
    msg = JSON.parse(ev.data);
  } catch {
    console.warn('pgrelay: ignoring non-JSON frame', ev.data);
    return;
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    console.warn('pgrelay: ignoring non-object frame', msg);
    return;
  }
  if ('type' in msg) { // control frame: shown, but bars are left alone
    console.info('pgrelay: control frame', msg);
    logEntry(msg, true);
    return;
  }
  if (typeof msg.channel !== 'string' || msg.channel === '') {
    console.warn('pgrelay: ignoring frame without channel', msg);
    return;
  }
  msg.id = msg.id == null ? '' : String(msg.id);
  msg.payload = msg.payload == null ? '' : String(msg.payload);
  logEntry(msg, false);
  const bar = bars.get(msg.payload.trim().toLowerCase());
  if (bar) hit(bar);
}

const url = socketURL(location.href);
urlEl.textContent = url;
let attempt = 0; // consecutive failed connections
let stableTimer;

function connect() {
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) { // e.g. opened from file://: not a ws URL at all
    console.warn('pgrelay: cannot open socket', err);
    retry(`cannot open ${url}: ${err.message}`);
    return;
  }
  ws.onopen = () => {
    setState('connected');
    logEvent(`connected to ${url}`, 'open');
    // Only a connection that stays up resets the backoff; a server that
    // accepts and immediately drops us must not cause a tight loop.
    stableTimer = setTimeout(() => { attempt = 0; }, STABLE_MS);
  };
  ws.onmessage = onFrame;
  ws.onclose = (ev) => {
    clearTimeout(stableTimer);
    const reason = ev.reason || CLOSE_NAMES[ev.code] || 'no reason given';
    retry(`closed ${ev.code}: ${reason}`);
  };
  // onerror carries no detail and is always followed by onclose.
}

function retry(why) {
  setState('reconnecting');
  // Exponential backoff with ±25% jitter, so a restarted server is not hit
  // by every open browser at the same instant.
  const base = BACKOFF_MIN_MS * 2 ** Math.min(attempt, 10);
  const delay = Math.round(Math.min(BACKOFF_MAX_MS, base * (0.75 + Math.random() / 2)));
  attempt++;
  logEvent(`${why}; reconnecting in ${(delay / 1000).toFixed(1)} s`, 'close');
  setTimeout(connect, delay);
}

setState('connecting');
connect();
