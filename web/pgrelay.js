// pgrelay browser client: one WebSocket to an edge, reconnection with
// exponential backoff and full jitter, resume with since=CHANNEL:ID, and
// duplicates dropped by id. An ES module with no dependencies; see the README.

const ID = /^(0|[1-9][0-9]{0,19})$/;

/** True if id a is greater than id b (decimal strings; by length, then text). */
const after = (a, b) => a.length > b.length || (a.length === b.length && a > b);

/**
 * Client of a pgrelay edge's `/ws`. Events (each listener gets an event whose
 * `detail` holds the data; an exception in a listener is logged, never thrown
 * into the client):
 * - `message`: `{channel, id, payload}`, once per id, in id order per channel.
 * - `reset`: `{channel, id}`: messages of `channel` up to and including `id`
 *   are lost to this client (the history no longer holds them): reload your
 *   state; the stream goes on after `id`.
 * - `state`: `{state, url, code?, reason?, delay?}` where state is
 *   `connecting` (first attempt), `connected`, `reconnecting` (with the close
 *   code, reason and the delay in ms before the next attempt) or `closed`.
 * - `auth`: `{code, reason}`: the edge closed with 4001-4099, codes reserved
 *   for authentication (fetch a new token); the client reconnects after backoff.
 */
export class PgRelay {
  /** Last id delivered (or reset to) per channel, as decimal strings. Persist it to resume across page loads. */
  positions;
  #channels;
  #url;
  #opts;
  #listeners = new Map();
  #ws = null;
  #timer = 0;
  #stable = 0;
  #attempt = 0;
  #state = 'closed';

  /**
   * @param {object} options
   * @param {string[]} options.channels channels to subscribe to (at least one)
   * @param {string} [options.url] the edge's socket endpoint (http(s) or ws(s),
   *   absolute or relative to the page); default `ws` next to the page, so
   *   `https://example.com/live/` uses `wss://example.com/live/ws`
   * @param {Map<string,string>|Object<string,string>} [options.positions] last ids seen, to resume from
   * @param {number} [options.minDelay=500] first backoff bound, in ms
   * @param {number} [options.maxDelay=10000] largest backoff bound, in ms
   * @param {number} [options.stableAfter=5000] a connection open this long resets the backoff, in ms
   * @param {string|function(): (string|Promise<string>)} [options.token] a JWT for an edge with
   *   EDGE_AUTH=jwt, or a function that fetches one; called before every connection, so a
   *   function gets a fresh token after the edge closed with 4001 (token expired)
   */
  constructor({ channels, url = 'ws', positions, minDelay = 500, maxDelay = 10000, stableAfter = 5000, token } = {}) {
    if (!Array.isArray(channels) || !channels.length || !channels.every((c) => typeof c === 'string' && c)) {
      throw new TypeError('PgRelay: channels must be a non-empty array of channel names');
    }
    this.#channels = [...channels];
    this.#opts = { minDelay, maxDelay, stableAfter, token };
    const u = new URL(url, globalThis.location?.href);
    u.searchParams.delete('channel');
    u.searchParams.delete('since');
    for (const c of this.#channels) u.searchParams.append('channel', c);
    // http: -> ws:, https: -> wss:. A string swap: the URL.protocol setter
    // refuses some scheme changes.
    this.#url = u.href.replace(/^http/, 'ws');
    this.positions = new Map();
    const given = positions instanceof Map ? positions : Object.entries(positions ?? {});
    for (const [c, id] of given) {
      if (ID.test(String(id))) this.positions.set(c, String(id));
    }
  }

  /** The socket URL without resume positions. */
  get url() { return this.#url; }

  /** The current state: `connecting`, `connected`, `reconnecting` or `closed`. */
  get state() { return this.#state; }

  /** Adds a listener for `message`, `reset`, `state` or `auth`. */
  addEventListener(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
  }

  /** Removes a listener added with addEventListener. */
  removeEventListener(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /** Opens the connection; it is kept open, reconnecting as needed, until close(). */
  connect() {
    if (this.#state !== 'closed') return;
    this.#attempt = 0;
    this.#setState({ state: 'connecting', url: this.#url });
    this.#open();
  }

  /** Closes the connection and stops reconnecting. connect() starts again, from the positions. */
  close() {
    if (this.#state === 'closed') return;
    clearTimeout(this.#timer);
    clearTimeout(this.#stable);
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'client closed');
    this.#setState({ state: 'closed', url: this.#url });
  }

  /** The URL of the next attempt: the socket URL with one since= per channel with a position. */
  resumeURL() {
    const u = new URL(this.#url);
    for (const c of this.#channels) {
      if (this.positions.has(c)) u.searchParams.append('since', `${c}:${this.positions.get(c)}`);
    }
    return u.href;
  }

  #emit(type, detail) {
    const ev = new CustomEvent(type, { detail });
    for (const fn of [...(this.#listeners.get(type) ?? [])]) {
      try {
        typeof fn === 'function' ? fn.call(this, ev) : fn.handleEvent(ev);
      } catch (err) {
        console.error(`pgrelay: ${type} listener failed`, err);
      }
    }
  }

  #setState(detail) {
    this.#state = detail.state;
    this.#emit('state', detail);
  }

  async #open() {
    const url = this.resumeURL();
    let ws;
    try {
      // Browsers cannot set headers on a WebSocket: the token travels as a
      // subprotocol, next to "pgrelay", which the edge selects.
      let { token } = this.#opts;
      if (typeof token === 'function') token = await token();
      if (this.#state === 'closed') return; // close() was called while fetching
      ws = token ? new WebSocket(url, ['pgrelay', `bearer.${token}`]) : new WebSocket(url);
    } catch (err) { // a token that could not be fetched, or not a ws: URL at all (a page from file:)
      console.error('pgrelay: cannot open', url, err);
      this.#retry(url, 1006, String(err.message ?? err), this.#backoff());
      return;
    }
    this.#ws = ws;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#setState({ state: 'connected', url });
      // Only a connection that stays up resets the backoff: an edge that
      // accepts and drops at once must not cause a tight loop.
      this.#stable = setTimeout(() => { this.#attempt = 0; }, this.#opts.stableAfter);
    };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#frame(ev.data); };
    // onerror carries no detail and is always followed by onclose.
    ws.onclose = (ev) => {
      if (ws !== this.#ws) return;
      clearTimeout(this.#stable);
      this.#ws = null;
      const { code, reason } = ev;
      let delay = this.#backoff();
      if (code === 1001) { // the edge is going away: another one answers at once
        delay = Math.random() * Math.min(this.#opts.minDelay, 1000);
      } else if (code === 1008) {
        console.error(`pgrelay: the edge closed with 1008 (policy violation: ${reason}): a client bug`);
      } else if (code >= 4001 && code <= 4099) {
        this.#emit('auth', { code, reason });
      }
      this.#retry(url, code, reason, delay);
    };
  }

  // Full jitter: uniform in [0, min(maxDelay, minDelay * 2^attempt)).
  #backoff() {
    const { minDelay, maxDelay } = this.#opts;
    return Math.random() * Math.min(maxDelay, minDelay * 2 ** Math.min(this.#attempt, 30));
  }

  #retry(url, code, reason, delay) {
    if (this.#state === 'closed') return; // a listener called close()
    this.#attempt++;
    delay = Math.round(delay);
    this.#setState({ state: 'reconnecting', url, code, reason, delay });
    if (this.#state !== 'reconnecting') return;
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  #frame(data) {
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return console.warn('pgrelay: ignoring a frame that is not JSON', data);
    }
    if (f?.type !== undefined && f.type !== 'reset' && f.type !== 'position') { // clients ignore types they do not know
      return console.info('pgrelay: ignoring a control frame of unknown type', f);
    }
    const channel = f?.channel;
    const id = String(f?.id ?? '');
    if (typeof channel !== 'string' || !ID.test(id)) {
      return console.warn('pgrelay: ignoring a frame without a channel or a valid id', f);
    }
    const last = this.positions.get(channel);
    if (f.type === 'position') {
      // Where the channel stands as we join: resume from here after a
      // reconnect even if no message comes meanwhile.
      if (last === undefined || after(id, last)) this.positions.set(channel, id);
    } else if (f.type === 'reset') {
      if (last !== undefined && !after(id, last)) return; // nothing we have not seen is lost
      this.positions.set(channel, id);
      this.#emit('reset', { channel, id });
    } else if (last === undefined || after(id, last)) {
      this.positions.set(channel, id);
      const detail = { channel, id, payload: f.payload == null ? '' : String(f.payload) };
      if (f.encoding) detail.encoding = f.encoding; // "base64": payload holds the bytes of a non-UTF-8 NOTIFY
      this.#emit('message', detail);
    }
  }
}
