//! WebSocket fan-out benchmark: how long a candle update takes from
//! [`Broadcaster::publish`] to a subscribed client's socket, and what the
//! gateway's threads spend per delivered message, JSON and MessagePack.
//!
//! In one process it starts real gateways (the `actix-web` server and the
//! [`Gateway`] actor, on `127.0.0.1:0`, over a [`Control`] that answers
//! nothing and a storage handle with no storage thread: the benchmark sends
//! no request), connects `--clients` WebSocket clients, each subscribed to
//! `candles:*:*:*` (or, with `--topics series`, to one series), and has a
//! publisher thread call `publish` at `--rate` updates per second spread
//! evenly over `--series` series. Each update
//! carries its publish instant (nanoseconds since a base `Instant` shared
//! with the clients) in `v`; a client records receive − publish for every
//! candle of every `candle` or `candles` frame it gets, parsing nothing but
//! the `v` fields.
//!
//! One gateway serves up to [`MAX_CLIENTS`] WebSocket clients (its
//! `max_clients` setting), so a run with more clients starts as many
//! gateways as needed, each with its own [`Broadcaster`] and `--workers`
//! HTTP workers, and splits the clients evenly; the publisher publishes
//! each update to every broadcaster, which encodes it once per broadcaster
//! instead of once. The report says how many gateways served a run.
//!
//! Per run (clients × format) it prints updates published/s, candle
//! messages and frames delivered/s, latency p50/p99/max, the CPU of the
//! gateways' threads (acceptor, HTTP workers where the sessions run, the
//! actor's system thread) per 1000 delivered messages, the publisher's CPU
//! (matching and encoding happen in `publish`, on the caller's thread: a
//! datasource's in the collector), the clients' CPU, and the process RSS.
//! It also notes the machine (cores, CPU model, load average). The
//! clients run in the same process, on the same cores as the server, and
//! take a good part of them: the figures are an upper bound of what the
//! gateway alone would cost. Nothing is asserted.
//!
//! Every wait has a deadline; a run lasts `--warmup` + `--seconds`.
//!
//! ```sh
//! cargo run --release --example fanout                  # 100 and 1000 clients, JSON and MessagePack
//! cargo run --release --example fanout -- --clients 100 --format msgpack --rate 5000
//! cargo run --release --example fanout -- --clients 100 --topics series
//! cargo run --release --example fanout -- --help
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};
use async_trait::async_trait;
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt as _, StreamExt as _};
use ohlcv_actors::control::{ApplyReport, Control, ControlError, StatusReport};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::LogHistory;
use ohlcv_actors::gateway::protocol::{CandleMessage, ServerMessage};
use ohlcv_actors::gateway::security::GatewaySettings;
use ohlcv_actors::gateway::{serve_listener, Gateway, GatewayDeps, StopGateway};
use ohlcv_actors::lifecycle::{
    stat_cpu_seconds_named, ChildExited, ChildId, HeartbeatSink, LifeGuard,
};
use ohlcv_actors::storage::StorageChannels;
use ohlcv_domain::config::{ApiToken, Config, ExchangeConfig};
use ohlcv_domain::{ExchangeId, Interval, Symbol};
use ohlcv_harness::machine::{load_average, Machine};
use ohlcv_storage::rescue::RescueFile;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long all the clients of a run may take to connect and have their
/// subscription answered. A thousand handshakes on a loaded 2-core machine
/// take a second or two; far more means something is wrong.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Timeout of one client's connection attempt, within [`CONNECT_DEADLINE`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client waits for a frame before looking at the run's phase
/// again: how late it notices the end of a run when nothing arrives.
const CLIENT_POLL: Duration = Duration::from_millis(200);

/// Clients one gateway serves (its `max_clients`): the largest run's.
const MAX_CLIENTS: usize = 1000;

/// How long the client threads and the gateways may take to stop once told.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Latencies are counted in 1 µs buckets up to this; slower ones in one
/// overflow bucket (their maximum is kept apart).
const HISTOGRAM_MAX_US: usize = 2_000_000;

/// How far behind its schedule the publisher may fall before it gives up
/// catching up (then publishes at its pace from now on, instead of a burst
/// that would measure the burst, not the rate).
const MAX_PUBLISH_LAG: Duration = Duration::from_millis(50);

/// The open time every update of a series carries: updates of one series
/// are updates of its one live candle, so they coalesce in a client's
/// outbox as live updates do.
const OPEN_TIME: i64 = 1_704_277_020_000;

/// What each client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Topics {
    /// `candles:*:*:*`: every update reaches every client.
    All,
    /// One series each (`candles:simulated:BENCH<i>USDT:1m`, client `i`
    /// modulo `--series`), as a chart window does: an update reaches
    /// clients / series clients.
    Series,
}

impl Topics {
    /// The subscribe message of client `i`.
    fn subscribe(self, i: usize, series: usize) -> String {
        let topic = match self {
            Topics::All => "candles:*:*:*".to_string(),
            Topics::Series => format!("candles:simulated:{}:1m", symbol_name(i % series)),
        };
        format!(r#"{{"type":"subscribe","id":1,"topics":["{topic}"]}}"#)
    }
}

/// The symbol of series `i`.
fn symbol_name(i: usize) -> String {
    format!("BENCH{i}USDT")
}

/// The sessions' encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// JSON text frames.
    Json,
    /// MessagePack binary frames (`/ws?format=msgpack`).
    Msgpack,
    /// JSON, then MessagePack.
    Both,
}

/// WebSocket fan-out benchmark (figures printed, never asserted).
#[derive(Debug, Parser)]
struct Args {
    /// Subscribed clients per run; a comma-separated list runs each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    clients: Vec<usize>,
    /// Encoding of the clients' sessions.
    #[arg(long, value_enum, default_value = "both")]
    format: Format,
    /// Candle updates published per second, all series together.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Series the updates go round.
    #[arg(long, default_value_t = 20)]
    series: usize,
    /// What each client subscribes to.
    #[arg(long, value_enum, default_value = "all")]
    topics: Topics,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of publishing before measuring, for the sessions to settle.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// HTTP worker threads per gateway (the collector runs 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Threads the clients run on (one single-threaded runtime each).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.series == 0 || args.clients.contains(&0) {
        bail!("--rate, --series and --clients must be positive");
    }
    if !(args.seconds > 0.0 && args.warmup >= 0.0) {
        bail!("--seconds must be positive and --warmup not negative");
    }
    let machine = Machine::observe();
    println!(
        "machine: {} cores, {}, load average {} (clients, publisher and gateways share these cores)",
        machine.cores, machine.model, machine.load_before
    );
    println!(
        "{} updates/s over {} series, clients subscribed to {}, {} s measured after {} s warmup, {} HTTP workers per gateway, clients on {} threads",
        args.rate,
        args.series,
        match args.topics {
            Topics::All => "candles:*:*:*",
            Topics::Series => "one series each",
        },
        args.seconds,
        args.warmup,
        args.workers,
        args.client_threads
    );

    let most = args.clients.iter().copied().max().unwrap_or(1);
    let gateways = Gateways::start(most.div_ceil(MAX_CLIENTS), args.workers)?;
    let formats: &[Format] = match args.format {
        Format::Both => &[Format::Json, Format::Msgpack],
        Format::Json => &[Format::Json],
        Format::Msgpack => &[Format::Msgpack],
    };
    let mut reports = Vec::new();
    for &clients in &args.clients {
        for &format in formats {
            let report = run(&args, &gateways, clients, format)
                .with_context(|| format!("run with {clients} {format:?} clients"))?;
            report.print();
            reports.push(report);
        }
    }
    println!();
    println!("| clients | format | gateways | published/s | messages/s | frames/s | p50 | p99 | max | gateway CPU-ms per 1000 msgs | publisher CPU-ms per 1000 msgs | clients CPU | RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for report in &reports {
        report.row();
    }
    println!("load average after: {}", load_average());
    gateways.stop()
}

/// Everything measured in one run.
struct Report {
    clients: usize,
    connected: u64,
    refused: u64,
    lost: u64,
    gateways: usize,
    format: Format,
    /// Clients each update is meant for, on average.
    fanout: f64,
    window: f64,
    published: u64,
    messages: u64,
    frames: u64,
    latency: Histogram,
    gateway_cpu: f64,
    publisher_cpu: f64,
    clients_cpu: f64,
    rss_kib: Option<u64>,
}

impl Report {
    fn per_1000(&self, cpu: f64) -> f64 {
        cpu * 1e6 / self.messages.max(1) as f64
    }

    fn print(&self) {
        let expected = self.published as f64 * self.fanout;
        println!();
        println!(
            "{} {:?} clients on {} gateway(s): {} connected, {} refused, {} lost during the run",
            self.clients, self.format, self.gateways, self.connected, self.refused, self.lost
        );
        println!(
            "  published {:.0} updates/s; delivered {:.0} candle messages/s in {:.0} frames/s ({:.1} % of published × receivers; the rest coalesced)",
            self.published as f64 / self.window,
            self.messages as f64 / self.window,
            self.frames as f64 / self.window,
            100.0 * self.messages as f64 / expected.max(1.0),
        );
        println!(
            "  publish → client latency: p50 {} p99 {} max {} ({} samples)",
            micros(self.latency.quantile(0.50)),
            micros(self.latency.quantile(0.99)),
            micros(self.latency.max_us()),
            self.latency.count,
        );
        println!(
            "  CPU: gateway threads {:.0} % of a core = {:.2} ms per 1000 delivered; publisher {:.0} % = {:.2} ms per 1000; clients {:.0} %",
            100.0 * self.gateway_cpu / self.window,
            self.per_1000(self.gateway_cpu),
            100.0 * self.publisher_cpu / self.window,
            self.per_1000(self.publisher_cpu),
            100.0 * self.clients_cpu / self.window,
        );
        println!("  RSS {}", mib(self.rss_kib));
    }

    fn row(&self) {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.0} % | {} |",
            self.connected,
            match self.format {
                Format::Json => "JSON",
                _ => "MessagePack",
            },
            self.gateways,
            self.published as f64 / self.window,
            self.messages as f64 / self.window,
            self.frames as f64 / self.window,
            micros(self.latency.quantile(0.50)),
            micros(self.latency.quantile(0.99)),
            micros(self.latency.max_us()),
            self.per_1000(self.gateway_cpu),
            self.per_1000(self.publisher_cpu),
            100.0 * self.clients_cpu / self.window,
            mib(self.rss_kib),
        );
    }
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The phases of a run, as the clients see them.
const CONNECTING: u8 = 0;
const MEASURING: u8 = 1;
const DRAINING: u8 = 2;
const STOPPING: u8 = 3;

/// What a run's threads share.
struct RunState {
    base: Instant,
    phase: AtomicU8,
    ready: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    frames: AtomicU64,
    messages: AtomicU64,
}

impl RunState {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }
}

/// One run: connect, publish, measure, disconnect.
fn run(args: &Args, gateways: &Gateways, clients: usize, format: Format) -> anyhow::Result<Report> {
    let state = Arc::new(RunState {
        base: Instant::now(),
        phase: AtomicU8::new(CONNECTING),
        ready: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        messages: AtomicU64::new(0),
    });
    let used = clients.div_ceil(MAX_CLIENTS);
    let per_gateway = clients.div_ceil(used);
    let query = match format {
        Format::Msgpack => "?format=msgpack",
        _ => "",
    };
    let urls: Vec<(String, String)> = (0..clients)
        .map(|i| {
            (
                format!("ws://{}/ws{query}", gateways.addrs[i / per_gateway]),
                args.topics.subscribe(i, args.series),
            )
        })
        .collect();
    let threads = args.client_threads.clamp(1, clients);
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<(String, String)> = urls.iter().skip(t).step_by(threads).cloned().collect();
        let state = state.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("fanout-client-{t}"))
                .spawn(move || client_thread(mine, format, state))?,
        );
    }

    let stop_clients = |state: &RunState, handles: Vec<JoinHandle<Histogram>>| {
        state.phase.store(STOPPING, Ordering::Relaxed);
        join_all(handles, STOP_DEADLINE)
    };
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        let settled = state.ready.load(Ordering::Relaxed)
            + state.refused.load(Ordering::Relaxed)
            + state.failed.load(Ordering::Relaxed);
        if settled >= clients as u64 {
            break;
        }
        if Instant::now() > deadline {
            stop_clients(&state, handles);
            bail!("only {settled} of {clients} clients connected within {CONNECT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connected = state.ready.load(Ordering::Relaxed);
    if connected == 0 {
        stop_clients(&state, handles);
        bail!("no client connected");
    }

    let publisher = Publisher::start(
        gateways.broadcasters.clone(),
        state.base,
        args.rate,
        args.series,
    )?;
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    let cpu_before = ThreadCpu::sample();
    let published_before = publisher.published.load(Ordering::Relaxed);
    let started = Instant::now();
    state.phase.store(MEASURING, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    state.phase.store(DRAINING, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let published = publisher.published.load(Ordering::Relaxed) - published_before;
    let cpu = ThreadCpu::sample().since(&cpu_before);
    let rss_kib = rss_kib();
    publisher.stop()?;
    let histograms = stop_clients(&state, handles);
    let mut latency = Histogram::new();
    for h in &histograms {
        latency.merge(h);
    }
    if histograms.len() < threads {
        eprintln!(
            "warning: {} of {threads} client threads did not stop within {STOP_DEADLINE:?}",
            threads - histograms.len()
        );
    }
    // The next run starts from no client: wait until every session is gone.
    let deadline = Instant::now() + STOP_DEADLINE;
    while gateways
        .broadcasters
        .iter()
        .map(|b| b.clients())
        .sum::<usize>()
        > 0
    {
        if Instant::now() > deadline {
            eprintln!("warning: sessions still open {STOP_DEADLINE:?} after the clients left");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Report {
        clients,
        connected,
        refused: state.refused.load(Ordering::Relaxed),
        lost: state.lost.load(Ordering::Relaxed) + state.failed.load(Ordering::Relaxed),
        gateways: used,
        format,
        fanout: match args.topics {
            Topics::All => connected as f64,
            Topics::Series => connected as f64 / args.series as f64,
        },
        window,
        published,
        messages: state.messages.load(Ordering::Relaxed),
        frames: state.frames.load(Ordering::Relaxed),
        latency,
        gateway_cpu: cpu.gateway,
        publisher_cpu: cpu.publisher,
        clients_cpu: cpu.clients,
        rss_kib,
    })
}

/// Joins the threads that finish by `deadline`, leaving the others (the
/// process ends soon anyway).
fn join_all<T>(handles: Vec<JoinHandle<T>>, within: Duration) -> Vec<T> {
    let deadline = Instant::now() + within;
    let mut done = Vec::new();
    for handle in handles {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            if let Ok(value) = handle.join() {
                done.push(value);
            }
        }
    }
    done
}

/// Runs `urls`' clients on one single-threaded runtime; returns their
/// latencies.
fn client_thread(urls: Vec<(String, String)>, format: Format, state: Arc<RunState>) -> Histogram {
    let histogram = Rc::new(RefCell::new(Histogram::new()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("client runtime: {error}");
            state.failed.fetch_add(urls.len() as u64, Ordering::Relaxed);
            return Histogram::new();
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|(url, subscribe)| {
                tokio::task::spawn_local(client(
                    url,
                    subscribe,
                    format,
                    state.clone(),
                    histogram.clone(),
                ))
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    histogram.take()
}

/// One client: connects, subscribes, then records the latency of every
/// candle it receives while the run measures.
async fn client(
    url: String,
    subscribe: String,
    format: Format,
    state: Arc<RunState>,
    histogram: Rc<RefCell<Histogram>>,
) {
    let mut ws =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(tungstenite::Error::Http(response))) => {
                if state.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    let body = response
                        .body()
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    eprintln!("a client was refused: {} {body}", response.status());
                }
                return;
            }
            Ok(Err(error)) => {
                eprintln!("client {url}: {error}");
                state.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                eprintln!("client {url}: no connection within {CONNECT_TIMEOUT:?}");
                state.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
    let subscribed = async {
        ws.send(Message::text(subscribe)).await.ok()?;
        // The answer is the first `response` frame (after the log history,
        // empty here).
        loop {
            let payload = match ws.next().await?.ok()? {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                _ => continue,
            };
            if contains(&payload, b"response") {
                return Some(());
            }
        }
    };
    if tokio::time::timeout(CONNECT_TIMEOUT, subscribed)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        eprintln!("client {url}: subscription not answered");
        state.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    state.ready.fetch_add(1, Ordering::Relaxed);

    loop {
        let phase = state.phase();
        if phase == STOPPING {
            break;
        }
        let message = match tokio::time::timeout(CLIENT_POLL, ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(message))) => message,
            Ok(None) | Ok(Some(Err(_))) => {
                state.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let now = state.base.elapsed().as_nanos() as f64;
        if state.phase() != MEASURING {
            continue;
        }
        let mut histogram = histogram.borrow_mut();
        let candles = match (&message, format) {
            (Message::Text(text), Format::Json) => {
                json_stamps(text.as_str(), |sent| histogram.record(now - sent))
            }
            (Message::Binary(bytes), Format::Msgpack) => {
                msgpack_stamps(bytes, |sent| histogram.record(now - sent))
            }
            _ => 0,
        };
        if candles > 0 {
            state.frames.fetch_add(1, Ordering::Relaxed);
            state.messages.fetch_add(candles, Ordering::Relaxed);
        }
    }
    let _ = tokio::time::timeout(CLIENT_POLL, ws.close(None)).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Calls `each` with the `v` of every candle in a JSON `candle` or
/// `candles` frame; returns how many. Only `v` is read: a candle's other
/// fields are names, numbers and a bool, and no other key is `"v"`.
fn json_stamps(text: &str, mut each: impl FnMut(f64)) -> u64 {
    const KEY: &str = "\"v\":";
    let mut n = 0;
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        rest = &rest[at + KEY.len()..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        if let Ok(v) = rest[..end].parse::<f64>() {
            each(v);
            n += 1;
        }
    }
    n
}

/// As [`json_stamps`], for MessagePack: the key `v` (fixstr 1) followed by
/// a float 64, as `rmp_serde` writes every `f64`.
fn msgpack_stamps(bytes: &[u8], mut each: impl FnMut(f64)) -> u64 {
    const KEY: [u8; 3] = [0xa1, b'v', 0xcb];
    let mut n = 0;
    let mut i = 0;
    while i + KEY.len() + 8 <= bytes.len() {
        if bytes[i..i + KEY.len()] == KEY {
            let start = i + KEY.len();
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[start..start + 8]);
            each(f64::from_be_bytes(raw));
            n += 1;
            i = start + 8;
        } else {
            i += 1;
        }
    }
    n
}

/// Latencies in 1 µs buckets.
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_ns: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: vec![0; HISTOGRAM_MAX_US + 1],
            count: 0,
            max_ns: 0.0,
        }
    }

    fn record(&mut self, ns: f64) {
        let ns = ns.max(0.0);
        let us = ((ns / 1000.0) as usize).min(HISTOGRAM_MAX_US);
        self.buckets[us] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The upper edge of the bucket holding quantile `q`, in µs.
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (us, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return if us == HISTOGRAM_MAX_US {
                    self.max_us()
                } else {
                    (us + 1) as f64
                };
            }
        }
        self.max_us()
    }

    fn max_us(&self) -> f64 {
        self.max_ns / 1000.0
    }
}

/// The thread publishing candle updates at a steady rate.
struct Publisher {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl Publisher {
    fn start(
        broadcasters: Vec<Broadcaster>,
        base: Instant,
        rate: u32,
        series: usize,
    ) -> anyhow::Result<Publisher> {
        let symbols: Vec<Symbol> = (0..series)
            .map(|i| Symbol::new(&symbol_name(i)))
            .collect::<Result<_, _>>()
            .context("a benchmark symbol")?;
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let (stop_flag, count) = (stop.clone(), published.clone());
        let period = Duration::from_secs_f64(1.0 / f64::from(rate));
        let handle = std::thread::Builder::new()
            .name("fanout-publish".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut i = 0usize;
                while !stop_flag.load(Ordering::Relaxed) {
                    let message = ServerMessage::Candle(CandleMessage {
                        exchange: ExchangeId::Simulated,
                        symbol: symbols[i % symbols.len()].clone(),
                        interval: Interval::M1,
                        t: OPEN_TIME,
                        o: 100.0,
                        h: 101.0,
                        l: 99.0,
                        c: 100.5,
                        v: base.elapsed().as_nanos() as f64,
                        closed: false,
                    });
                    for broadcaster in &broadcasters {
                        broadcaster.publish(&message);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > MAX_PUBLISH_LAG {
                        next = now;
                    }
                }
            })?;
        Ok(Publisher {
            stop,
            published,
            handle,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if join_all(vec![self.handle], STOP_DEADLINE).is_empty() {
            bail!("the publisher did not stop within {STOP_DEADLINE:?}");
        }
        Ok(())
    }
}

/// CPU seconds of the process's threads, by role.
struct ThreadCpu {
    gateway: f64,
    publisher: f64,
    clients: f64,
}

impl ThreadCpu {
    /// Reads `/proc/self/task/*/stat` (Linux; zeros elsewhere). Threads
    /// that ended are not counted: none of these ends during a run.
    ///
    /// The gateway's threads are the server's acceptor (`actix-server
    /// acceptor`), its HTTP workers and the actix system thread running the
    /// [`Gateway`] actors. Started inside an actix system, as the collector
    /// starts them, the workers are arbiters named `actix-rt|system:…`, not
    /// `actix-server worker …`; in this process no other arbiter runs, so
    /// every such thread is a worker.
    fn sample() -> ThreadCpu {
        let mut cpu = ThreadCpu {
            gateway: 0.0,
            publisher: 0.0,
            clients: 0.0,
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, seconds)) = stat_cpu_seconds_named(&stat) {
                if name.starts_with("actix-server")
                    || name.starts_with("actix-rt|system")
                    || name == "fanout-actix"
                {
                    cpu.gateway += seconds;
                } else if name.starts_with("fanout-publish") {
                    cpu.publisher += seconds;
                } else if name.starts_with("fanout-client") {
                    cpu.clients += seconds;
                }
            }
        }
        cpu
    }

    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            gateway: self.gateway - before.gateway,
            publisher: self.publisher - before.publisher,
            clients: self.clients - before.clients,
        }
    }
}

/// `VmRSS` of the process, in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The gateways, running in an actix system on a thread of their own.
struct Gateways {
    addrs: Vec<SocketAddr>,
    broadcasters: Vec<Broadcaster>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Gateways {
    fn start(count: usize, workers: usize) -> anyhow::Result<Gateways> {
        let dir = tempfile::tempdir()?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fanout-actix".into())
            .spawn(move || {
                actix::System::new().block_on(async move {
                    // Never read: there is no storage thread. The channels
                    // must outlive the gateways all the same.
                    let channels =
                        StorageChannels::new(RescueFile::for_database(&dir.path().join("x.db")));
                    let exits = IgnoreExits.start().recipient();
                    let mut gateways = Vec::new();
                    let mut started = Vec::new();
                    // Held while the servers run: they serve duplicates.
                    let mut listeners = Vec::new();
                    for generation in 1..=count as u64 {
                        let broadcaster = Broadcaster::new();
                        let deps = GatewayDeps {
                            control: Arc::new(NoSupervisor),
                            storage: channels.handle(),
                            broadcaster: broadcaster.clone(),
                            logs: LogHistory::default(),
                            // No rate limit: a thousand upgrades from one
                            // address are the benchmark, not a flood.
                            settings: Arc::new(GatewaySettings {
                                max_clients: MAX_CLIENTS as u32,
                                rate_limit: 0,
                                ..GatewaySettings::default()
                            }),
                        };
                        let bound = match std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(
                            |listener| {
                                let bound = serve_listener(deps, &listener, workers);
                                listeners.push(listener);
                                bound
                            },
                        ) {
                            Ok(bound) => bound,
                            Err(error) => {
                                let _ = ready_tx.send(Err(error));
                                return;
                            }
                        };
                        started.push((bound.addr(), broadcaster.clone()));
                        gateways.push(
                            Gateway::new(
                                bound,
                                broadcaster,
                                HeartbeatSink::default(),
                                LifeGuard::new(ChildId::Gateway, generation, exits.clone()),
                            )
                            .start(),
                        );
                    }
                    let _ = ready_tx.send(Ok(started));
                    let _ = stopped.await;
                    for gateway in gateways {
                        let _ =
                            tokio::time::timeout(STOP_DEADLINE, gateway.send(StopGateway)).await;
                    }
                    drop((channels, listeners));
                });
            })?;
        let started = ready_rx
            .recv_timeout(CONNECT_DEADLINE)
            .context("the gateways did not start")?
            .context("binding a gateway")?;
        let (addrs, broadcasters) = started.into_iter().unzip();
        Ok(Gateways {
            addrs,
            broadcasters,
            stop,
            thread,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        if join_all(vec![self.thread], STOP_DEADLINE * 2).is_empty() {
            bail!("the gateways did not stop in time");
        }
        Ok(())
    }
}

/// Takes the gateways' exit reports, which the benchmark does not need.
struct IgnoreExits;

impl Actor for IgnoreExits {
    type Context = Context<Self>;
}

impl Handler<ChildExited> for IgnoreExits {
    type Result = ();

    fn handle(&mut self, _: ChildExited, _: &mut Self::Context) {}
}

/// A supervisor that is not there: the benchmark sends no command.
struct NoSupervisor;

fn absent() -> ControlError {
    ControlError::Unavailable("the fan-out benchmark runs no supervisor".into())
}

#[async_trait]
impl Control for NoSupervisor {
    async fn config(&self) -> Result<Config, ControlError> {
        Err(absent())
    }

    async fn replace_config(&self, _: Config) -> Result<ApplyReport, ControlError> {
        Err(absent())
    }

    async fn toggle_exchange(
        &self,
        _: ExchangeId,
        _: Option<bool>,
    ) -> Result<ExchangeConfig, ControlError> {
        Err(absent())
    }

    async fn set_symbols(
        &self,
        _: ExchangeId,
        _: Vec<Symbol>,
    ) -> Result<ExchangeConfig, ControlError> {
        Err(absent())
    }

    async fn restart(&self) -> Result<ApplyReport, ControlError> {
        Err(absent())
    }

    async fn delete_database(&self) -> Result<(), ControlError> {
        Err(absent())
    }

    async fn status(&self) -> Result<StatusReport, ControlError> {
        Err(absent())
    }

    async fn exchange_symbols(&self, _: ExchangeId) -> Result<Vec<Symbol>, ControlError> {
        Err(absent())
    }

    async fn api_token(&self) -> Result<Option<ApiToken>, ControlError> {
        Err(absent())
    }
}
