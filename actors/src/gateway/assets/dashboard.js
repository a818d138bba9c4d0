// The dashboard served at `/`: a live chart of one series, the workers,
// the system, reloads, completeness, the exchanges' controls and the log,
// all over one `/client.js` connection.
//
// For tests and scripts the page states what it shows in data attributes:
// `#chart[data-bars]` (bars held), `[data-last-time]` (open time of the last
// bar, UTC ms), `[data-last-close]`, `[data-live-updates]` (live updates
// drawn); `#workers tr[data-worker]` carries `data-state`, `data-updates`
// and `data-timestamp` of each worker's last metrics; `body[data-api]` says
// whether requests go over the WebSocket (`ws`) or HTTP (`http`, against a
// collector that answers no WebSocket requests).

import { CollectorClient, CollectorError, candleTopic } from "/client.js";

/** Candles loaded when a series is chosen: a chart's width and more. */
const HISTORY_LIMIT = 1500;
/** Bars in view after a series loads: about 6 px each on a laptop screen. */
const SHOWN_BARS = 200;
/** Lines kept in the log pane; older ones are removed. */
const LOG_LINES = 500;
/** How often the children's states (`status`) are read: the pushes carry
 * metrics, not states or restarts. A cheap read of the supervisor. */
const STATUS_EVERY_MS = 3000;
/** How often `completeness` is read, besides on demand and after each
 * sync. Each read makes the storage thread write its queue first (so that
 * queued candles count), so a tab open all day should not ask often. */
const COMPLETENESS_EVERY_MS = 30000;

const params = new URLSearchParams(location.search);
const $ = (selector) => document.querySelector(selector);

let token = params.get("token") || sessionStorage.getItem("ohlcv-token") || "";
const client = new CollectorClient({
  format: params.get("format") === "msgpack" ? "msgpack" : "json",
  token: token || undefined,
});
/** `ws` while the server answers WebSocket requests, `http` once it showed
 * it does not (an older collector): requests then go to the HTTP routes. */
let api = "ws";
document.body.dataset.api = api;

// ---- requests -----------------------------------------------------------

/** The HTTP route of each request method, for the `http` fallback. */
function httpRoute(method, p) {
  const q = (object) => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(object)) if (value != null && value !== "") search.set(key, value);
    const text = search.toString();
    return text ? `?${text}` : "";
  };
  const seg = encodeURIComponent;
  switch (method) {
    case "ohlcv": return ["GET", `/ohlcv/${seg(p.exchange)}/${seg(p.symbol)}/${seg(p.interval)}${q({ from: p.from, to: p.to, limit: p.limit })}`];
    case "status": return ["GET", "/status"];
    case "config": return ["GET", "/config"];
    case "exchanges": return ["GET", "/exchanges"];
    case "exchangeSymbols": return ["GET", `/exchangeSymbols/${seg(p.exchange)}`];
    case "databaseSymbols": return ["GET", "/databaseSymbols"];
    case "completeness": return ["GET", `/completeness${q(p)}`];
    case "setConfig": return ["POST", "/config", p.config];
    case "setSymbols": return ["POST", "/exchangeSymbols", { exchange: p.exchange, symbols: p.symbols }];
    case "toggleExchange": return ["POST", "/toggleExchange", p];
    case "restart": return ["POST", "/restart", {}];
    case "deleteDatabase": return ["POST", "/deleteDatabase", {}];
    default: throw new CollectorError("bad_request", `unknown method ${method}`);
  }
}

async function httpRequest(method, p) {
  const [verb, path, body] = httpRoute(method, p);
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method: verb, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) {
    const error = answer.error || {};
    throw new CollectorError(error.code || "error", error.message || response.statusText, response.status);
  }
  return answer;
}

/** One request, over the WebSocket or, against an older collector, HTTP. */
function request(method, p = {}) {
  return api === "ws" ? client.request(method, p) : httpRequest(method, p);
}

function useHttp(reason) {
  if (api === "http") return;
  api = "http";
  document.body.dataset.api = api;
  $("#series-note").textContent = "requests over HTTP: this collector answers no WebSocket requests";
  console.warn("ohlcv dashboard:", reason);
  refreshAll();
}

client.on("error", (error) => {
  // An older collector answers `subscribe` and `request` frames with a
  // `bad_message` error without an id; it sends every message to every
  // client, so pushes keep coming and only requests need another way.
  if (error.code === "bad_message") useHttp(error.message);
  else console.warn("ohlcv dashboard:", error);
});

// ---- connection ---------------------------------------------------------

client.on("state", (state) => {
  const badge = $("#connection");
  badge.dataset.state = state;
  badge.textContent = state;
});

client.on("open", ({ reconnect }) => {
  // After a reconnect, whatever happened meanwhile is read again: the
  // pushes missed are gone.
  if (reconnect) refreshAll();
});

client
  .subscribe(["worker_metrics", "system_info", "logs", "reload_progress"])
  .catch((error) => console.warn("ohlcv dashboard: subscribe failed", error));

// ---- chart --------------------------------------------------------------

const chartBox = $("#chart");
const chart = LightweightCharts.createChart(chartBox, {
  autoSize: true,
  layout: { background: { color: "#161b24" }, textColor: "#d1d4dc" },
  grid: { vertLines: { color: "#1f2633" }, horzLines: { color: "#1f2633" } },
  timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#273041" },
  rightPriceScale: { borderColor: "#273041" },
  crosshair: { mode: LightweightCharts.CrosshairMode.Normal },
});
const candles = chart.addCandlestickSeries({
  upColor: "#26a69a",
  downColor: "#ef5350",
  wickUpColor: "#26a69a",
  wickDownColor: "#ef5350",
  borderVisible: false,
});

/** The series shown, what the chart holds, and live updates that arrived
 * before its history. */
const shown = { exchange: null, symbol: null, interval: null, topic: null, loaded: false, early: [], bars: 0, last: null, live: 0, generation: 0 };

function showBars() {
  chartBox.dataset.bars = String(shown.bars);
  chartBox.dataset.liveUpdates = String(shown.live);
  if (shown.last) {
    chartBox.dataset.lastTime = String(shown.last.time * 1000);
    chartBox.dataset.lastClose = String(shown.last.close);
  } else {
    delete chartBox.dataset.lastTime;
    delete chartBox.dataset.lastClose;
  }
}

function bar(t, o, h, l, c) {
  return { time: t / 1000, open: o, high: h, low: l, close: c };
}

/** Draws one live update of the series shown; an update older than the
 * last bar (late, or from before the history) is left out, as the chart
 * only moves forward. */
function drawUpdate(update) {
  if (update.exchange !== shown.exchange || update.symbol !== shown.symbol || update.interval !== shown.interval) return;
  if (!shown.loaded) {
    shown.early.push(update);
    return;
  }
  const next = bar(update.t, update.o, update.h, update.l, update.c);
  if (shown.last && next.time < shown.last.time) return;
  candles.update(next);
  if (!shown.last || next.time > shown.last.time) shown.bars += 1;
  shown.last = next;
  shown.live += 1;
  showBars();
}

client.on("candle", drawUpdate);
client.on("candles", (batch) => batch.forEach(drawUpdate));

/** Shows `exchange`/`symbol`/`interval`: live updates from now, then the
 * history, then the updates that came meanwhile. */
async function showSeries(exchange, symbol, interval) {
  const generation = ++shown.generation;
  const topic = candleTopic(exchange, symbol, interval);
  if (shown.topic && shown.topic !== topic && api === "ws") {
    client.unsubscribe([shown.topic]).catch(() => {});
  }
  Object.assign(shown, { exchange, symbol, interval, topic, loaded: false, early: [], bars: 0, last: null, live: 0 });
  candles.setData([]);
  showBars();
  location.hash = `${exchange}/${symbol}/${interval}`;
  $("#chart-title").textContent = `${exchange} ${symbol} ${interval}`;
  if (api === "ws") client.subscribe([topic]).catch((error) => console.warn("ohlcv dashboard:", error));
  let rows;
  try {
    rows = await request("ohlcv", { exchange, symbol, interval, limit: HISTORY_LIMIT });
  } catch (error) {
    $("#chart-title").textContent = `${exchange} ${symbol} ${interval}: ${error.message}`;
    return;
  }
  if (generation !== shown.generation) return;
  const data = rows.map((r) => bar(r.timestamp, r.open, r.high, r.low, r.close));
  candles.setData(data);
  // The latest bars at a readable width; scroll or zoom for the rest.
  chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, data.length - SHOWN_BARS), to: data.length + 2 });
  shown.bars = data.length;
  shown.last = data.length ? data[data.length - 1] : null;
  shown.loaded = true;
  const early = shown.early;
  shown.early = [];
  early.forEach(drawUpdate);
  showBars();
  highlightSeries();
}

// ---- series and exchanges (from the config) -----------------------------

let config = null;

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((value) => new Option(value, value, false, value === chosen)));
}

/** The series to show: the one in the URL's hash if it is configured,
 * otherwise the first of the first enabled exchange. */
function pickSeries() {
  const enabled = Object.entries(config.exchanges).filter(([, e]) => e.enabled && e.symbols.length);
  const [hashExchange, hashSymbol, hashInterval] = location.hash.slice(1).split("/");
  const fromHash = config.exchanges[hashExchange];
  if (fromHash && fromHash.symbols.includes(hashSymbol) && config.intervals.includes(hashInterval)) {
    return [hashExchange, hashSymbol, hashInterval];
  }
  if (shown.exchange && config.exchanges[shown.exchange]?.symbols.includes(shown.symbol)) {
    return [shown.exchange, shown.symbol, config.intervals.includes(shown.interval) ? shown.interval : config.intervals[0]];
  }
  if (!enabled.length) return null;
  return [enabled[0][0], enabled[0][1].symbols[0], config.intervals[0]];
}

function fillSeriesSelects(exchange, symbol, interval) {
  fillSelect($("#series-exchange"), Object.keys(config.exchanges), exchange);
  fillSelect($("#series-symbol"), config.exchanges[exchange]?.symbols || [], symbol);
  fillSelect($("#series-interval"), config.intervals, interval);
}

for (const id of ["#series-exchange", "#series-symbol", "#series-interval"]) {
  $(id).addEventListener("change", (event) => {
    let exchange = $("#series-exchange").value;
    let symbol = $("#series-symbol").value;
    if (event.target.id === "series-exchange") symbol = config.exchanges[exchange]?.symbols[0];
    const interval = $("#series-interval").value;
    fillSeriesSelects(exchange, symbol, interval);
    if (symbol) showSeries(exchange, symbol, interval);
  });
}

async function loadConfig({ keepSeries = false } = {}) {
  config = await request("config");
  renderExchanges();
  const pick = pickSeries();
  if (!pick) {
    fillSeriesSelects(Object.keys(config.exchanges)[0], null, config.intervals[0]);
    $("#chart-title").textContent = "no exchange enabled with symbols";
    return;
  }
  fillSeriesSelects(...pick);
  const same = pick[0] === shown.exchange && pick[1] === shown.symbol && pick[2] === shown.interval;
  if (!(keepSeries && same)) await showSeries(...pick);
}

function renderExchanges() {
  const box = $("#exchanges");
  // A symbol list being typed survives the redraw (a reconnect reads the
  // config again).
  const editing = document.activeElement?.dataset?.symbols;
  const typed = editing ? document.activeElement.value : null;
  const rows = Object.entries(config.exchanges).map(([id, exchange]) => {
    const row = document.createElement("div");
    row.className = "exchange";
    row.dataset.exchange = id;
    const label = document.createElement("label");
    const toggle = document.createElement("input");
    toggle.type = "checkbox";
    toggle.checked = exchange.enabled;
    toggle.dataset.toggle = id;
    toggle.title = exchange.enabled ? `stop ${id}` : `start ${id}`;
    label.append(toggle, ` ${id}`);
    const symbols = document.createElement("input");
    symbols.type = "text";
    symbols.value = exchange.symbols.join(", ");
    symbols.dataset.symbols = id;
    symbols.setAttribute("aria-label", `${id} symbols`);
    const save = document.createElement("button");
    save.type = "button";
    save.textContent = "save symbols";
    save.dataset.saveSymbols = id;
    const result = document.createElement("div");
    result.className = "result";
    result.dataset.result = id;
    toggle.addEventListener("change", () => toggleExchange(id, toggle, result));
    save.addEventListener("click", () => saveSymbols(id, symbols, result));
    symbols.addEventListener("keydown", (event) => {
      if (event.key === "Enter") saveSymbols(id, symbols, result);
    });
    row.append(label, symbols, save, result);
    return row;
  });
  box.replaceChildren(...rows);
  if (editing) {
    const input = box.querySelector(`input[data-symbols="${editing}"]`);
    if (input) {
      input.value = typed;
      input.focus();
    }
  }
}

function report(result, text, isError) {
  result.textContent = text;
  result.classList.toggle("error", Boolean(isError));
}

async function toggleExchange(id, toggle, result) {
  const enabled = toggle.checked;
  toggle.disabled = true;
  report(result, enabled ? "starting…" : "stopping…");
  try {
    const answer = await request("toggleExchange", { exchange: id, enabled });
    report(result, answer.enabled ? "enabled" : "disabled");
    await loadConfig({ keepSeries: true });
    $(`[data-result="${id}"]`).textContent = answer.enabled ? "enabled" : "disabled";
  } catch (error) {
    toggle.checked = !enabled;
    report(result, `${error.code}: ${error.message}`, true);
  } finally {
    toggle.disabled = false;
  }
}

async function saveSymbols(id, input, result) {
  const symbols = input.value.split(/[\s,]+/).map((s) => s.trim().toUpperCase()).filter(Boolean);
  // Done typing: the redraw after the save shows the list as saved.
  input.blur();
  report(result, "saving…");
  try {
    await request("setSymbols", { exchange: id, symbols });
    await loadConfig({ keepSeries: true });
    $(`[data-result="${id}"]`).textContent = `saved: ${symbols.join(", ")}`;
  } catch (error) {
    report(result, `${error.code}: ${error.message}`, true);
  }
}

$("#token").value = token;
$("#token-save").addEventListener("click", () => {
  token = $("#token").value.trim();
  if (token) sessionStorage.setItem("ohlcv-token", token);
  else sessionStorage.removeItem("ohlcv-token");
  // The token is presented when connecting: connect again with it.
  client.token = token || null;
  client.close();
  client.connect();
});

// ---- workers ------------------------------------------------------------

/** The last metrics and state of each worker, and what the rate of
 * updates is computed from. */
const workers = new Map();

function worker(name) {
  if (!workers.has(name)) workers.set(name, { name, state: null, restarts: 0, lastError: null, metrics: {}, rate: null });
  return workers.get(name);
}

function takeMetrics(name, metrics) {
  const w = worker(name);
  const before = w.metrics;
  if (metrics.timestamp && before.timestamp && metrics.timestamp > before.timestamp && typeof metrics.updates === "number") {
    const seconds = (metrics.timestamp - before.timestamp) / 1000;
    // A restarted datasource counts from 0 again: no rate across that.
    w.rate = metrics.updates >= before.updates ? (metrics.updates - before.updates) / seconds : null;
  }
  if (!before.timestamp || !metrics.timestamp || metrics.timestamp >= before.timestamp) w.metrics = metrics;
}

client.on("worker_metrics", (data) => {
  for (const [name, metrics] of Object.entries(data)) takeMetrics(name, metrics);
  renderWorkers();
});

async function loadStatus() {
  const status = await request("status");
  const seen = new Set();
  for (const child of status.children) {
    seen.add(child.name);
    const w = worker(child.name);
    w.state = child.state;
    w.restarts = child.restarts;
    w.lastError = child.last_error;
    if (child.metrics && Object.keys(child.metrics).length) takeMetrics(child.name, child.metrics);
  }
  // A datasource that was stopped is no longer a child.
  for (const name of [...workers.keys()]) if (!seen.has(name)) workers.delete(name);
  renderWorkers();
}

function age(ms) {
  if (ms == null) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function renderWorkers() {
  const now = Date.now();
  const rows = [...workers.values()].map((w) => {
    const m = w.metrics;
    const tr = document.createElement("tr");
    tr.dataset.worker = w.name;
    tr.dataset.state = w.state || "";
    if (m.timestamp) tr.dataset.timestamp = String(m.timestamp);
    if (typeof m.updates === "number") tr.dataset.updates = String(m.updates);
    const state = m.state ? `${w.state || "?"} · ${m.state}` : w.state || "";
    const errors = [];
    if (m.rejected) errors.push(`${m.rejected} rejected`);
    if (m.failedFlushes) errors.push(`${m.failedFlushes} failed writes`);
    const lastError = m.lastError || w.lastError;
    if (lastError) errors.push(lastError);
    const stateCell = cell(state, `state-${m.state || w.state}`);
    const errorCell = cell(errors.join("; "));
    errorCell.title = errors.join("\n");
    tr.append(
      cell(w.name),
      stateCell,
      cell(String(w.restarts), "num"),
      cell(w.rate == null ? "" : w.rate.toFixed(1), "num"),
      cell(m.lastMessageAgoMs == null ? "" : age(m.lastMessageAgoMs), "num"),
      cell(m.reconnects == null ? "" : String(m.reconnects), "num"),
      errorCell,
      cell(m.cpuUser == null ? "" : `${m.cpuUser} %`, "num"),
      cell(m.timestamp ? age(now - m.timestamp) : "", "num"),
    );
    return tr;
  });
  $("#workers tbody").replaceChildren(...rows);
}

// ---- system -------------------------------------------------------------

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

client.on("system_info", (info) => {
  const entries = [
    ["CPU", `${info.cpu?.usage ?? "?"} % of ${info.cpu?.cores ?? "?"} cores; collector ${info.cpu?.process ?? "?"} %`],
    ["memory", `${bytes(info.memory?.used)} of ${bytes(info.memory?.total)} (${info.memory?.usagePercent ?? "?"} %)`],
    ["process", `RSS ${bytes(info.process?.rss)}`],
    ["database", bytes(info.database?.total)],
    ["disk free", `${bytes(info.disk?.free)} of ${bytes(info.disk?.total)}`],
    ["uptime", age((info.uptime ?? 0) * 1000)],
    ["platform", `${info.platform ?? ""} ${info.arch ?? ""}`],
  ];
  const nodes = entries.flatMap(([key, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  });
  $("#system").replaceChildren(...nodes);
});

// ---- reloads and backfills ----------------------------------------------

const progress = new Map();

client.on("reload_progress", (p) => {
  const before = progress.get(p.exchange);
  progress.set(p.exchange, p);
  // A sync that just ended may have stored history the chart lacks (the
  // page loaded while it ran): read the series again.
  if (p.status === "streaming" && before && before.status !== "streaming" && p.exchange === shown.exchange) {
    showSeries(shown.exchange, shown.symbol, shown.interval);
  }
  const items = [...progress.values()].map((p) => {
    const li = document.createElement("li");
    li.dataset.exchange = p.exchange;
    li.dataset.status = p.status;
    const label = document.createElement("div");
    const name = document.createElement("span");
    name.textContent = `${p.exchange} `;
    const status = document.createElement("span");
    status.className = `state-${p.status}`;
    status.textContent = `${p.status} ${p.progress} %`;
    const message = document.createElement("div");
    message.className = "note";
    message.textContent = p.message;
    label.append(name, status);
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = p.progress;
    li.append(label, bar, message);
    return li;
  });
  $("#progress").replaceChildren(...items);
  // A finished sync changes what is stored.
  if (p.status === "streaming") loadCompleteness().catch(() => {});
});

// ---- completeness -------------------------------------------------------

function utc(ms) {
  return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 16);
}

async function loadCompleteness() {
  const rows = await request("completeness");
  const trs = rows.map((r) => {
    const tr = document.createElement("tr");
    tr.className = "selectable";
    tr.dataset.series = `${r.exchange}/${r.symbol}/${r.interval}`;
    const share = r.expected ? r.stored / r.expected : 1;
    const barBox = document.createElement("td");
    const barOuter = document.createElement("div");
    barOuter.className = "bar";
    const barInner = document.createElement("span");
    barInner.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
    barOuter.append(barInner);
    barBox.append(barOuter);
    tr.append(
      cell(`${r.exchange} ${r.symbol} ${r.interval}`),
      cell(`${r.stored} / ${r.expected}`, "num"),
      barBox,
      cell(String(r.missing), "num"),
      cell(r.exchange_holes ? `${r.exchange_holes} (${r.exchange_hole_candles} candles)` : "0", "num"),
      cell(utc(r.first_open_time)),
      cell(utc(r.last_open_time)),
      cell(r.newest_closed_age_ms == null ? "none closed" : `${age(r.newest_closed_age_ms)} ago`, "num"),
    );
    tr.addEventListener("click", () => {
      if (!config?.exchanges[r.exchange]?.symbols.includes(r.symbol)) return;
      fillSeriesSelects(r.exchange, r.symbol, r.interval);
      showSeries(r.exchange, r.symbol, r.interval);
    });
    return tr;
  });
  $("#completeness tbody").replaceChildren(...trs);
  highlightSeries();
}

function highlightSeries() {
  const key = `${shown.exchange}/${shown.symbol}/${shown.interval}`;
  for (const tr of document.querySelectorAll("#completeness tr[data-series]")) {
    tr.classList.toggle("selected", tr.dataset.series === key);
  }
}

$("#completeness-refresh").addEventListener("click", () => loadCompleteness().catch(showError));

// ---- log ----------------------------------------------------------------

client.on("log", (line) => {
  const list = $("#logs");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const li = document.createElement("li");
  li.className = line.type;
  const time = document.createElement("time");
  time.textContent = (line.timestamp || "").replace("T", " ").replace("Z", "");
  li.append(time, line.message);
  list.append(li);
  while (list.children.length > LOG_LINES) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
});

// ---- start --------------------------------------------------------------

function showError(error) {
  console.warn("ohlcv dashboard:", error);
}

function refreshAll() {
  loadConfig({ keepSeries: false }).catch(showError);
  loadStatus().catch(showError);
  loadCompleteness().catch(showError);
}

refreshAll();
setInterval(() => loadStatus().catch(showError), STATUS_EVERY_MS);
setInterval(() => loadCompleteness().catch(showError), COMPLETENESS_EVERY_MS);
