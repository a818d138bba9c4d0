// ohlcv-collector WebSocket client, an ES module without dependencies.
//
// Served by the collector at `/client.js`; the dashboard uses it, and so
// can any browser page or Electron renderer:
//
//   import { CollectorClient } from "http://127.0.0.1:3000/client.js";
//   const client = new CollectorClient({ url: "ws://127.0.0.1:3000/ws" });
//   client.on("candle", (c) => console.log(c.symbol, c.t, c.c));
//   await client.subscribe(["candles:simulated:BTCUSDT:1m", "worker_metrics"]);
//   const rows = await client.request("ohlcv",
//     { exchange: "simulated", symbol: "BTCUSDT", interval: "1m", limit: 500 });
//
// What it does for you:
// - requests are matched to their answers by id and return promises; an
//   answer in chunks (`chunk`, `last`) is put together before it resolves;
// - the connection is re-opened after any loss, with backoff (0.5 s doubling
//   to 10 s, with jitter), and every topic subscribed is subscribed again;
// - messages are JSON text frames, or MessagePack binary frames with
//   `format: "msgpack"` (the vendored `@msgpack/msgpack`, loaded on first
//   use from the same server, or the codec you pass as `msgpack`).
//
// Requests in flight when the connection drops are rejected with
// `code: "disconnected"` rather than sent again: `toggleExchange` without
// `enabled` toggles, and sending it twice would undo it.

/** Backoff of the reconnects, in ms: the first wait and the longest. */
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;

/** How long a request waits for its answer unless told otherwise. The
 * server bounds its own waits (60 s for the supervisor); this is a little
 * longer, so that the server's own error arrives first. */
const REQUEST_TIMEOUT_MS = 65000;

/** An error answer of the server, or a request that could not be answered. */
export class CollectorError extends Error {
  /**
   * @param {string} code e.g. `bad_request`, `unknown_topic`, `disconnected`, `timeout`
   * @param {string} message for humans
   * @param {number} [status] the HTTP status the route would have answered
   */
  constructor(code, message, status) {
    super(message);
    this.name = "CollectorError";
    this.code = code;
    this.status = status;
  }
}

let msgpackLoading = null;

/** The vendored MessagePack codec (`{encode, decode}`), loaded once as a
 * classic script from `base`. In a page or an Electron renderer that
 * imports `@msgpack/msgpack` itself, pass it as the `msgpack` option instead. */
export function loadMsgpack(base = import.meta.url) {
  if (globalThis.MessagePack) return Promise.resolve(globalThis.MessagePack);
  if (!msgpackLoading) {
    msgpackLoading = new Promise((resolve, reject) => {
      if (typeof document === "undefined") {
        reject(new Error("no document to load msgpack.min.js into: pass the msgpack option"));
        return;
      }
      const script = document.createElement("script");
      script.src = new URL("/assets/msgpack.min.js", base).href;
      script.onload = () => resolve(globalThis.MessagePack);
      script.onerror = () => {
        msgpackLoading = null;
        reject(new Error(`could not load ${script.src}`));
      };
      document.head.appendChild(script);
    });
  }
  return msgpackLoading;
}

/** The default `/ws` address: the server this module came from. */
function defaultUrl() {
  const origin = new URL(import.meta.url);
  const scheme = origin.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${origin.host}/ws`;
}

/**
 * One connection to a collector's `/ws`, kept open until `close()`.
 *
 * Events (`on(type, handler)`): every server push by its `type`
 * (`candle`, `candles`, `worker_metrics`, `system_info`, `reload_progress`,
 * `log`), with its `data`; `open` and `close` of each connection (`close`
 * gets `{code, reason}`); `state` with the new state (`connecting`, `open`,
 * `closed`); `error` with a `CollectorError` the server sent without an id.
 */
export class CollectorClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url] the `/ws` address; default the server of this module
   * @param {"json"|"msgpack"} [options.format] frames to ask for; default `json`
   * @param {string} [options.token] the `api_token`, sent as `?token=` (browsers cannot set headers)
   * @param {{encode: Function, decode: Function}} [options.msgpack] a MessagePack codec
   * @param {boolean} [options.connect] open at once; default true
   */
  constructor(options = {}) {
    this.url = options.url || defaultUrl();
    this.format = options.format === "msgpack" ? "msgpack" : "json";
    this.token = options.token || null;
    this.codec = options.msgpack || null;
    this.state = "closed";
    this.topics = new Set();
    this.handlers = new Map();
    this.pending = new Map();
    this.queue = [];
    this.nextId = 1;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.closedByUser = false;
    this.connections = 0;
    if (options.connect !== false) this.connect();
  }

  /** Registers `handler` for events of `type`; returns a function that removes it. */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type)?.delete(handler);
  }

  emit(type, data) {
    for (const handler of this.handlers.get(type) || []) {
      try {
        handler(data);
      } catch (error) {
        console.error(`ohlcv client: a ${type} handler failed`, error);
      }
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  /** Opens the connection (again); called by the constructor unless `connect: false`. */
  async connect() {
    this.closedByUser = false;
    if (this.socket || this.timer) return;
    this.setState("connecting");
    if (this.format === "msgpack" && !this.codec) {
      try {
        this.codec = await loadMsgpack();
      } catch (error) {
        this.emit("error", new CollectorError("msgpack_unavailable", error.message));
        this.setState("closed");
        return;
      }
    }
    const url = new URL(this.url);
    if (this.format === "msgpack") url.searchParams.set("format", "msgpack");
    if (this.token) url.searchParams.set("token", this.token);
    const socket = new WebSocket(url.href);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.connections += 1;
      this.setState("open");
      // Subscriptions first, so that nothing sent before them is missed
      // by a request that follows.
      if (this.topics.size > 0) {
        this.send({ type: "subscribe", id: this.takeId(), topics: [...this.topics] });
      }
      const queued = this.queue;
      this.queue = [];
      for (const message of queued) this.send(message);
      this.emit("open", { reconnect: this.connections > 1 });
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => this.lost(socket, event.code, event.reason);
    // An error is always followed by close, which does the work.
    socket.onerror = () => {};
  }

  lost(socket, code, reason) {
    if (this.socket !== socket) return;
    this.socket = null;
    for (const [id, call] of this.pending) {
      // A subscribe is sent again on the next connection; anything else fails.
      if (call.resubscribe && !this.closedByUser) {
        this.queue.push(call.message);
        continue;
      }
      clearTimeout(call.timer);
      call.reject(new CollectorError("disconnected", `the connection closed before the answer (${code})`));
      this.pending.delete(id);
    }
    this.setState(this.closedByUser ? "closed" : "connecting");
    this.emit("close", { code, reason });
    if (this.closedByUser) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt);
    const delay = ceiling * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Closes the connection for good (no reconnect); pending requests fail. */
  close() {
    this.closedByUser = true;
    clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    if (socket) {
      socket.close(1000, "client closed");
      this.lost(socket, 1000, "client closed");
    } else {
      this.setState("closed");
    }
  }

  takeId() {
    const id = this.nextId;
    this.nextId += 1;
    return id;
  }

  send(message) {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      this.queue.push(message);
      return;
    }
    socket.send(this.format === "msgpack" ? this.codec.encode(message) : JSON.stringify(message));
  }

  decode(raw) {
    if (typeof raw === "string") return JSON.parse(raw);
    const bytes = new Uint8Array(raw);
    if (this.format === "msgpack") return this.codec.decode(bytes);
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  receive(raw) {
    let message;
    try {
      message = this.decode(raw);
    } catch (error) {
      this.emit("error", new CollectorError("bad_frame", `undecodable frame: ${error.message}`));
      return;
    }
    if (message == null || typeof message !== "object") return;
    const call = message.id != null ? this.pending.get(message.id) : undefined;
    if (message.type === "response" && call) {
      if (message.chunk == null) {
        this.settle(message.id, call, (c) => c.resolve(message.data));
      } else {
        call.parts.push(...(Array.isArray(message.data) ? message.data : [message.data]));
        if (message.last) this.settle(message.id, call, (c) => c.resolve(c.parts));
      }
      return;
    }
    if (message.type === "error") {
      const body = message.error || message.data || {};
      const error = new CollectorError(body.code || "error", body.message || "error", body.status);
      if (call) this.settle(message.id, call, (c) => c.reject(error));
      else this.emit("error", error);
      return;
    }
    if (message.type) {
      this.emit(message.type, message.data);
      this.emit("message", message);
    }
  }

  settle(id, call, how) {
    clearTimeout(call.timer);
    this.pending.delete(id);
    how(call);
  }

  call(message, options = {}) {
    const id = this.takeId();
    const timeout = options.timeout ?? REQUEST_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const call = { resolve, reject, parts: [], resubscribe: options.resubscribe, message: { ...message, id } };
      call.timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CollectorError("timeout", `no answer to ${message.method || message.type} within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, call);
      this.send(call.message);
    });
  }

  /**
   * Calls a method of the server (`ohlcv`, `status`, `config`, `setConfig`,
   * `exchanges`, `exchangeSymbols`, `setSymbols`, `toggleExchange`,
   * `restart`, `deleteDatabase`, `databaseSymbols`, `completeness`) with the
   * parameters its HTTP route takes. Resolves with the route's body;
   * rejects with a `CollectorError`. Sent once the connection is open.
   */
  request(method, params = {}, options = {}) {
    return this.call({ type: "request", method, params }, options);
  }

  /**
   * Subscribes to `topics` (`candles:<exchange>:<symbol>:<interval>` with
   * `*` for any segment, `worker_metrics`, `system_info`, `logs`,
   * `reload_progress`), now and after every reconnect. Resolves with every
   * topic the server now has for this connection.
   */
  async subscribe(topics) {
    for (const topic of topics) this.topics.add(topic);
    try {
      const data = await this.call({ type: "subscribe", topics }, { resubscribe: true });
      return data.topics;
    } catch (error) {
      // Topics the server refuses are not asked for again; after a
      // timeout they stay, for the next connection.
      if (error.code !== "timeout" && error.code !== "disconnected") {
        for (const topic of topics) this.topics.delete(topic);
      }
      throw error;
    }
  }

  /** Stops `topics`; resolves with the topics left. */
  async unsubscribe(topics) {
    for (const topic of topics) this.topics.delete(topic);
    const data = await this.call({ type: "unsubscribe", topics });
    return data.topics;
  }
}

/** A topic name for the candles of one series (`*` matches any). */
export function candleTopic(exchange, symbol, interval) {
  return `candles:${exchange}:${symbol}:${interval}`;
}
