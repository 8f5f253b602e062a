// pgrelay demo page: three colour bars and a rolling log, fed by the browser
// client in pgrelay.js. No dependencies, no build step.

import { PgRelay } from './pgrelay.js';

const LOG_MAX = 50;

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
    li.append(span('time', clock()), span('chan', msg.channel || 'control'), span('id', String(msg.type)),
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

function onMessage({ detail: msg }) {
  logEntry(msg, false);
  const bar = bars.get(msg.payload.trim().toLowerCase());
  if (bar) hit(bar);
}

// Messages up to detail.id were missed and the history no longer holds them.
// A real application reloads its state here; the demo shows the frame.
function onReset({ detail }) {
  console.info('pgrelay: reset', detail);
  logEntry({ type: 'reset', ...detail }, true);
}

function onState({ detail: d }) {
  setState(d.state);
  if (d.state === 'connected') {
    logEvent(`connected to ${d.url}`, 'open');
  } else if (d.state === 'reconnecting') {
    const reason = d.reason || CLOSE_NAMES[d.code] || 'no reason given';
    logEvent(`closed ${d.code}: ${reason}; reconnecting in ${(d.delay / 1000).toFixed(1)} s`, 'close');
  }
}

// The socket lives next to the page ("ws" relative to the page's directory),
// so the demo keeps working behind an ingress that mounts it under a path
// prefix. The page's own ?channel= params (repeatable) are passed through;
// default "data".
const channels = new URL(location.href).searchParams.getAll('channel')
  .map((c) => c.trim()).filter(Boolean);
const relay = new PgRelay({ channels: channels.length ? channels : ['data'] });
urlEl.textContent = relay.url;
relay.addEventListener('message', onMessage);
relay.addEventListener('reset', onReset);
relay.addEventListener('state', onState);
relay.connect();
