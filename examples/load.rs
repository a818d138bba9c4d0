//! Load harness: runs the release `ohlcv-collector` binary against a flood
//! from the simulated exchange and prints what it costs.
//!
//! It starts the real binary on a temp config (simulated exchange, `N`
//! symbols × the chosen intervals at `--rate` updates per second per series,
//! a temp SQLite file, `"port": 0`), connects `--clients` WebSocket clients
//! that read and count every message, and optionally one client that never
//! reads. Once the datasource reports `streaming`, it measures for
//! `--seconds`:
//!
//! - live updates per second (the `updates` counter of child `simulated` in
//!   `GET /status`, between two heartbeats);
//! - candle messages per second received by each client, and the messages
//!   (a client that keeps up gets every update; one that falls behind gets
//!   the latest of each candle, or is closed with 1013);
//! - process CPU (utime + stime from `/proc/<pid>/stat`, as % of one core),
//!   and RSS (`VmRSS`, sampled every 500 ms: at the start, peak, final);
//! - storage batch writes (`flushes`, `lastFlushMs`, the queue left);
//! - `GET /ohlcv/simulated/BTCUSDT/<interval>?limit=1000` latency
//!   (p50/p99/max) from `--ohlcv-threads` threads asking in a loop;
//!
//! then sends SIGTERM and times the shutdown and its exit code. The report
//! notes the machine (cores, CPU model, load average), because the figures
//! mean little without it, and gives the ratio *updates handled per
//! CPU-second*, which compares across machines better than raw rates. The
//! harness runs on the same machine as the collector: its own CPU use is
//! printed too.
//!
//! With `--exchange binance|bybit|okx` it floods the collector over a real
//! WebSocket instead: it starts a fake of that exchange on loopback
//! (`ohlcv-fake-exchanges`), points the collector's adapter at it (only
//! that exchange, BTCUSDT, ETHUSDT and SOLUSDT × `1m`, the symbols the fake
//! lists), and once the datasource streams asks the fake to push
//! `--frames` kline frames per connection as fast as the socket takes
//! them. It measures until the datasource's `updates` have grown by the
//! frames sent (or `--flood-timeout`), then waits for a batch write, and
//! prints the frames/s the fake sent and the collector handled, the
//! collector's CPU-ms per 1000 frames (by thread too), RSS and the storage
//! writes. No WebSocket client and no `/ohlcv` loop run in this mode: the
//! path measured is socket → adapter → datasource → SQLite row.
//!
//! With `--bootstrap` it measures the start instead: the simulated
//! exchange at `--rate` (1/s is a quiet stream), `--symbols` ×
//! `--intervals` series each loading `--bootstrap-load` candles of
//! history into an empty database, and it prints the time from the
//! collector's start until the datasource streams and until every candle
//! of history is in the database (its `datasource streaming` log line,
//! then the rows counted in SQLite every 250 ms),
//! with the collector's CPU over that time. No client, no `/ohlcv` loop.
//!
//! Everything is loopback and bounded in time: every wait has a deadline,
//! and the collector is killed if the harness fails midway.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example load                      # 10 symbols, 1m+5m, 1000/s per series
//! cargo run --release --example load -- --rate 5000 --stuck-client
//! cargo run --release --example load -- --exchange binance  # 1,000,000 frames per connection
//! cargo run --release --example load -- --exchange okx --frames 5000000
//! # 200 series × 5,000 candles = 1,000,000 candles of history:
//! cargo run --release --example load -- --bootstrap --symbols 20 \
//!     --intervals 1m,3m,5m,15m,30m,1h,2h,4h,6h,12h --bootstrap-load 5000 --rate 1
//! cargo run --release --example load -- --help
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::Parser;
use ohlcv_actors::metrics::{DatasourceMetrics, GatewayMetrics, StorageMetrics};
use ohlcv_fake_exchanges::{FakeExchange, FakeOptions, Venue};
use ohlcv_harness::machine::{load_average, Machine};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Valid USDT perpetual symbols, in the order `--symbols` takes them. The
/// first twenty are the ones the simulated exchange lists with their own
/// prices; the others get prices derived from their name.
const SYMBOLS: [&str; 30] = [
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "BNBUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
    "LTCUSDT",
    "TRXUSDT",
    "BCHUSDT",
    "NEARUSDT",
    "ATOMUSDT",
    "UNIUSDT",
    "APTUSDT",
    "ARBUSDT",
    "OPUSDT",
    "SUIUSDT",
    "FILUSDT",
    "ETCUSDT",
    "INJUSDT",
    "TIAUSDT",
    "SEIUSDT",
    "WLDUSDT",
    "AAVEUSDT",
    "1000PEPEUSDT",
    "1000SHIBUSDT",
    "HBARUSDT",
];

/// How often RSS (and the clock for the run) is sampled.
const SAMPLE_PERIOD: Duration = Duration::from_millis(500);

/// Read timeout of the WebSocket clients: how late they notice the stop
/// flag when no message arrives.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// Timeout of one HTTP request from the harness. Generous: under a flood on
/// a shared machine a request may be slow, and a slow answer is a figure,
/// not a failure.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100
/// on every architecture Linux exposes to user space through `/proc`.
const USER_HZ: f64 = 100.0;

/// Longest measured run, so a typo cannot keep the harness busy for days.
const MAX_SECONDS: u64 = 3600;

/// Symbols the fake exchanges list: the first ones of [`SYMBOLS`].
const FAKE_SYMBOLS: usize = 3;

/// `bootstrap_load` in the `--exchange` mode unless given: the fake's REST
/// history is not what is measured.
const FAKE_BOOTSTRAP_LOAD: u64 = 10;

/// How often the `--exchange` mode reads the fake's frame counter.
const FRAME_POLL_PERIOD: Duration = Duration::from_millis(10);

/// How often the `--exchange` mode reads `/status` (heartbeats come every
/// 3 s; reading more often only narrows when a new one is seen).
const STATUS_POLL_PERIOD: Duration = Duration::from_millis(250);

/// The exchange whose fake floods the collector in the `--exchange` mode.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FloodExchange {
    Binance,
    Bybit,
    Okx,
}

impl FloodExchange {
    fn venue(self) -> Venue {
        match self {
            FloodExchange::Binance => Venue::Binance,
            FloodExchange::Bybit => Venue::Bybit,
            FloodExchange::Okx => Venue::Okx,
        }
    }

    /// The collector's exchange id: its config key and its datasource's
    /// name in `/status`.
    fn id(self) -> &'static str {
        match self {
            FloodExchange::Binance => "binance_futures",
            FloodExchange::Bybit => "bybit_futures",
            FloodExchange::Okx => "okx_futures",
        }
    }
}

/// Load harness for ohlcv-collector: floods it from the simulated exchange
/// and prints updates/s, client throughput, CPU, RSS, flushes, `/ohlcv`
/// latency and shutdown time.
#[derive(Parser, Debug)]
#[command(name = "load")]
struct Options {
    /// The collector binary [default: `ohlcv-collector` next to the
    /// `examples/` directory of this harness, i.e. `target/release/`].
    #[arg(long)]
    binary: Option<PathBuf>,

    /// Symbols collected, the first N of a fixed list (BTCUSDT, ETHUSDT,
    /// SOLUSDT, …; at most 30).
    #[arg(long, default_value_t = 10)]
    symbols: usize,

    /// Intervals collected, comma-separated. The first one is the interval
    /// `/ohlcv` is asked for.
    #[arg(long, value_delimiter = ',', default_value = "1m,5m")]
    intervals: Vec<String>,

    /// Live updates per second per series (symbol × interval) from the
    /// simulated exchange.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,

    /// `batch_interval` of the collector: ms between batch writes.
    #[arg(long, default_value_t = 1000)]
    batch_interval: u64,

    /// `bootstrap_load` of the collector: candles of history loaded per
    /// series at start [default: 1000; 10 with --exchange].
    #[arg(long)]
    bootstrap_load: Option<u64>,

    /// Flood the collector from a loopback fake of this exchange over a
    /// real WebSocket instead of running the simulated exchange (symbols
    /// capped at the fake's 3, interval `1m`; --rate, --intervals,
    /// --clients, --stuck-client, --seconds and --ohlcv-pause-ms do not
    /// apply).
    #[arg(long, value_enum)]
    exchange: Option<FloodExchange>,

    /// With --exchange: kline frames the fake pushes to each connection.
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,

    /// With --exchange: longest wait, in seconds, for the collector to
    /// handle the flood; then the figures so far are printed.
    #[arg(long, default_value_t = 300)]
    flood_timeout: u64,

    /// Measure the bootstrap of history (see the header) instead of a
    /// flood: the time until `--symbols` × `--intervals` ×
    /// `--bootstrap-load` candles are stored.
    #[arg(long, conflicts_with = "exchange")]
    bootstrap: bool,

    /// WebSocket clients that read and count every message.
    #[arg(long, default_value_t = 2)]
    clients: usize,

    /// Also connect one WebSocket client that never reads.
    #[arg(long)]
    stuck_client: bool,

    /// Length of the measured run, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,

    /// Pause between two `/ohlcv` requests, in ms; 0 asks back to back.
    /// The requests cost the collector CPU too, which the ratio of updates
    /// per CPU-second includes.
    #[arg(long, default_value_t = 0)]
    ohlcv_pause_ms: u64,

    /// Threads asking `/ohlcv` in a loop, side by side
    /// (one loop alone reaches some 550 requests/s on 2 cores).
    #[arg(long, default_value_t = 1)]
    ohlcv_threads: usize,

    /// Longest wait for the collector to listen and then stream, in seconds.
    #[arg(long, default_value_t = 120)]
    startup_timeout: u64,

    /// Longest wait for the exit after SIGTERM, in seconds; then it is
    /// killed and the run reported as failed.
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,

    /// `RUST_LOG` for the collector.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    match run(Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Printed here rather than returned: a returned anyhow error
            // prints a backtrace when RUST_BACKTRACE is set, which hides
            // the one line that matters.
            eprintln!("load: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> anyhow::Result<()> {
    ensure!(
        (1..=SYMBOLS.len()).contains(&options.symbols),
        "--symbols must be 1 to {}",
        SYMBOLS.len()
    );
    ensure!(!options.intervals.is_empty(), "--intervals is empty");
    ensure!(
        (1..=MAX_SECONDS).contains(&options.seconds),
        "--seconds must be 1 to {MAX_SECONDS}"
    );
    let binary = match &options.binary {
        Some(path) => path.clone(),
        None => default_binary()?,
    };
    ensure!(
        binary.is_file(),
        "collector binary {} not found; run `cargo build --release` first (or pass --binary)",
        binary.display()
    );

    let machine = Machine::observe();
    let dir = tempfile::tempdir().context("temp dir")?;
    // Started before the config is written: the config holds its URLs.
    let fake = options
        .exchange
        .map(|exchange| FakeExchange::start(exchange.venue(), FakeOptions::default()));
    let config = config(&options, fake.as_ref());
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )
    .context("writing the config")?;

    match (&fake, options.exchange) {
        (Some(fake), Some(exchange)) => eprintln!(
            "load: starting {} against the fake {exchange:?} at {} ({} symbols × 1m)",
            binary.display(),
            fake.ws_url(),
            options.symbols.min(FAKE_SYMBOLS)
        ),
        _ => eprintln!(
            "load: starting {} ({} symbols × {:?} at {}/s per series)",
            binary.display(),
            options.symbols,
            options.intervals,
            options.rate
        ),
    }
    let launched = Instant::now();
    let mut collector = Collector::start(&binary, dir.path(), &options)?;
    let result = match &fake {
        None if options.bootstrap => {
            measure_bootstrap(&options, &mut collector, dir.path(), launched).map(|report| {
                report.print(&options, &machine);
                report.exit_ok()
            })
        }
        None => measure(&options, &mut collector).map(|report| {
            report.print(&options, &machine);
            report.exit_ok()
        }),
        Some(fake) => measure_flood(&options, &mut collector, fake).map(|report| {
            report.print(&options, &machine);
            report.exit_ok()
        }),
    };
    let exit_ok = match result {
        Ok(exit_ok) => exit_ok,
        Err(error) => {
            eprintln!("load: the run failed; last collector log lines:");
            for line in collector.stderr.tail() {
                eprintln!("  {line}");
            }
            return Err(error);
        }
    };
    if !exit_ok {
        eprintln!("load: last collector log lines:");
        for line in collector.stderr.tail() {
            eprintln!("  {line}");
        }
        bail!("the collector did not shut down cleanly");
    }
    Ok(())
}

/// `ohlcv-collector` in the directory above this example's own executable
/// (`target/release/examples/load` → `target/release/ohlcv-collector`).
fn default_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    let release = me
        .parent()
        .and_then(Path::parent)
        .context("this executable has no grandparent directory; pass --binary")?;
    Ok(release.join(format!("ohlcv-collector{}", std::env::consts::EXE_SUFFIX)))
}

/// The collector's config for `options`: the simulated exchange, or only
/// the exchange `fake` imitates, pointed at it.
fn config(options: &Options, fake: Option<&FakeExchange>) -> Value {
    let (exchanges, intervals, bootstrap_load) = match (options.exchange, fake) {
        (Some(exchange), Some(fake)) => {
            let mut exchanges = serde_json::Map::new();
            exchanges.insert(
                exchange.id().to_string(),
                json!({
                    "enabled": true,
                    "symbols": &SYMBOLS[..options.symbols.min(FAKE_SYMBOLS)],
                    "rest_url": fake.rest_url(),
                    "ws_url": fake.ws_url()
                }),
            );
            (
                Value::Object(exchanges),
                vec!["1m".to_string()],
                options.bootstrap_load.unwrap_or(FAKE_BOOTSTRAP_LOAD),
            )
        }
        _ => (
            json!({
                "simulated": {
                    "enabled": true,
                    "symbols": &SYMBOLS[..options.symbols],
                    "simulation": { "seed": 42, "updates_per_second": options.rate }
                }
            }),
            options.intervals.clone(),
            options.bootstrap_load.unwrap_or(1000),
        ),
    };
    json!({
        "exchanges": exchanges,
        "intervals": intervals,
        "database_path": "./data/ohlcv.db",
        "batch_interval": options.batch_interval,
        "max_records": 100000,
        "bootstrap_load": bootstrap_load,
        "port": 0,
        // The load test may connect many clients at once and asks
        // `/ohlcv` back to back from one address: it measures the
        // collector, not the rate limit.
        "rate_limit": 0
    })
}

// ---------------------------------------------------------------------------
// The collector process

/// The running collector; killed on drop unless it already exited.
struct Collector {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<LogTail>,
    agent: ureq::Agent,
    /// The measured datasource's exchange id, its child name in `/status`.
    datasource: &'static str,
}

impl Collector {
    /// Starts `binary` on the `config.json` in `dir` and waits for its
    /// `listening on http://ADDR` line.
    fn start(binary: &Path, dir: &Path, options: &Options) -> anyhow::Result<Collector> {
        let mut child = Command::new(binary)
            .args(["run", "--log-format", "json", "--config"])
            .arg(dir.join("config.json"))
            .env("RUST_LOG", &options.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = Arc::new(LogTail::default());
        let err = BufReader::new(child.stderr.take().expect("piped stderr"));
        let sink = stderr.clone();
        std::thread::spawn(move || sink.drain(err));
        let (tx, rx) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        // Keeps reading after the address so the pipe never fills.
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                line.clear();
            }
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut collector = Collector {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            agent,
            datasource: options.exchange.map_or("simulated", FloodExchange::id),
        };
        let deadline = Instant::now() + Duration::from_secs(options.startup_timeout);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    collector.addr = addr.context("unreadable address on stdout")?;
                    return Ok(collector);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = collector.child.try_wait()? {
                        bail!("the collector exited at start ({status})");
                    }
                }
                Err(_) => bail!("the collector did not print its address"),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET `path` as JSON.
    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let mut response = self
            .agent
            .get(format!("http://{}{path}", self.addr))
            .call()
            .with_context(|| format!("GET {path}"))?;
        ensure!(
            response.status() == 200,
            "GET {path}: status {}",
            response.status()
        );
        Ok(response.body_mut().read_json()?)
    }

    /// A snapshot of `/status`, with the children that matter here.
    fn status(&self) -> anyhow::Result<Status> {
        let status = self.get_json("/status")?;
        let entry = |name: &str| {
            status["children"]
                .as_array()
                .and_then(|children| children.iter().find(|c| c["name"] == name))
                .cloned()
                .unwrap_or(Value::Null)
        };
        Ok(Status {
            datasource: ChildStatus::read(entry(self.datasource))?,
            storage: ChildStatus::read(entry("storage"))?,
            gateway: ChildStatus::read(entry("gateway"))?,
        })
    }

    /// Waits until the datasource reports `streaming`.
    fn wait_streaming(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status()?;
            if status
                .datasource
                .metrics
                .as_ref()
                .is_some_and(|m| m.state == "streaming")
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the datasource was not streaming after {} s: {}",
                timeout.as_secs(),
                status.datasource.raw
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM and waits for the exit, killing the process after
    /// `timeout`. Gives the exit status (if it exited by itself) and how
    /// long it took.
    fn terminate(&mut self, timeout: Duration) -> anyhow::Result<(Option<ExitStatus>, Duration)> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill")?;
        ensure!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((Some(status), started.elapsed()));
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok((None, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The collector's stderr (JSON log lines): the last lines, and the count
/// of warnings and errors.
#[derive(Default)]
struct LogTail {
    lines: Mutex<VecDeque<String>>,
    warnings: AtomicU64,
    errors: AtomicU64,
    /// When the first `datasource streaming` line was read: the moment a
    /// history sync ended, sooner than the next heartbeat shows it.
    streaming: Mutex<Option<Instant>>,
}

impl LogTail {
    /// Lines kept for a failure report.
    const KEEP: usize = 30;

    fn drain(&self, mut input: impl BufRead) {
        let mut line = String::new();
        while input.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains(r#""level":"WARN""#) {
                self.warnings.fetch_add(1, Ordering::Relaxed);
            } else if line.contains(r#""level":"ERROR""#) {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            if line.contains("datasource streaming") {
                self.streaming
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Instant::now);
            }
            let mut lines = self.lines.lock().unwrap();
            if lines.len() == Self::KEEP {
                lines.pop_front();
            }
            lines.push_back(line.trim_end().to_string());
            line.clear();
        }
    }

    fn tail(&self) -> Vec<String> {
        self.lines.lock().unwrap().iter().cloned().collect()
    }
}

/// The `/status` entries the harness reads.
struct Status {
    /// The measured datasource (`simulated`, or the flooded exchange).
    datasource: ChildStatus<DatasourceMetrics>,
    storage: ChildStatus<StorageMetrics>,
    gateway: ChildStatus<GatewayMetrics>,
}

/// One `/status` entry: when its last heartbeat arrived and the metrics it
/// carried, as the struct of the child's kind.
struct ChildStatus<M> {
    /// When its last heartbeat arrived, UTC ms.
    last_heartbeat: Option<i64>,
    /// `None` before the first heartbeat (or for a child not running).
    metrics: Option<M>,
    /// The entry as served, for error messages.
    raw: Value,
}

impl<M: DeserializeOwned> ChildStatus<M> {
    /// Reads `entry` (`null` for a child absent from `/status`).
    ///
    /// # Errors
    /// Metrics that are not those of the child's kind.
    fn read(entry: Value) -> anyhow::Result<Self> {
        let metrics = &entry["metrics"];
        let metrics = if metrics.is_null() || metrics.as_object().is_some_and(|m| m.is_empty()) {
            None
        } else {
            Some(
                serde_json::from_value(metrics.clone())
                    .with_context(|| format!("metrics of {}", entry["name"]))?,
            )
        };
        Ok(ChildStatus {
            last_heartbeat: entry["last_heartbeat"].as_i64(),
            metrics,
            raw: entry,
        })
    }
}

/// `figure` of a child's metrics (0 before its first heartbeat).
fn metric<M>(child: &ChildStatus<M>, figure: impl Fn(&M) -> f64) -> f64 {
    child.metrics.as_ref().map_or(0.0, figure)
}

/// Per-second rate of `counter` of a child between two `/status`
/// snapshots, over the time between their heartbeats (the counters are
/// those of the last heartbeat, every 3 s); `None` without a new heartbeat.
fn rate<M>(
    first: &ChildStatus<M>,
    last: &ChildStatus<M>,
    counter: impl Fn(&M) -> f64,
) -> Option<f64> {
    let (a, b) = (first.last_heartbeat?, last.last_heartbeat?);
    (b > a).then(|| (metric(last, &counter) - metric(first, &counter)) / ((b - a) as f64 / 1000.0))
}

// ---------------------------------------------------------------------------
// /proc

/// CPU time (user + system) of process `pid` so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_of(Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU time (user + system) from a `/proc/…/stat` file.
fn cpu_time_of(path: &Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14, 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

/// CPU time of each thread of process `pid`, by thread id, with its name
/// (the kernel keeps the first 15 bytes).
fn thread_cpu_times(pid: u32) -> BTreeMap<u32, (String, Duration)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(cpu) = cpu_time_of(&task.path().join("stat")) {
            threads.insert(tid, (name.trim().to_string(), cpu));
        }
    }
    threads
}

/// CPU time used in the window by one thread name.
struct ThreadCpu {
    name: String,
    /// Threads of that name.
    count: usize,
    /// Their CPU together.
    total: Duration,
    /// The CPU of the busiest of them: whether one thread is the limit.
    busiest: Duration,
}

/// CPU time used in the window, by thread name (threads of one name are
/// summed: the kernel keeps 15 bytes of a name, so every actix arbiter is
/// `actix-rt|system`), largest first.
fn cpu_by_thread_name(
    before: &BTreeMap<u32, (String, Duration)>,
    after: &BTreeMap<u32, (String, Duration)>,
) -> Vec<ThreadCpu> {
    let mut by_name: BTreeMap<&str, ThreadCpu> = BTreeMap::new();
    for (tid, (name, cpu)) in after {
        let start = before.get(tid).map_or(Duration::ZERO, |(_, cpu)| *cpu);
        let used = cpu.saturating_sub(start);
        let entry = by_name.entry(name).or_insert_with(|| ThreadCpu {
            name: name.clone(),
            count: 0,
            total: Duration::ZERO,
            busiest: Duration::ZERO,
        });
        entry.count += 1;
        entry.total += used;
        entry.busiest = entry.busiest.max(used);
    }
    let mut list: Vec<_> = by_name.into_values().collect();
    list.sort_by_key(|entry| std::cmp::Reverse(entry.total));
    list
}

/// `name share%` of each thread name that used CPU in `window`, as % of
/// one core over it, largest first; for several threads of one name, the
/// busiest one's share too.
fn thread_shares(threads: &[ThreadCpu], window: Duration) -> String {
    let share = |cpu: Duration| 100.0 * cpu.as_secs_f64() / window.as_secs_f64();
    threads
        .iter()
        .filter(|t| !t.total.is_zero())
        .map(|t| match t.count {
            1 => format!("{} {:.0}%", t.name, share(t.total)),
            n => format!(
                "{} (×{n}, busiest {:.0}%) {:.0}%",
                t.name,
                share(t.busiest),
                share(t.total)
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------
// WebSocket clients

/// What one reading client saw.
#[derive(Default)]
struct ClientCounts {
    candles: AtomicU64,
    by_type: Mutex<BTreeMap<String, u64>>,
    /// Why the connection ended, and whether that was after SIGTERM.
    ended: Mutex<Option<(String, bool)>>,
}

/// A client that reads every message in its own thread until `stop`.
struct Reader {
    counts: Arc<ClientCounts>,
    thread: JoinHandle<()>,
}

/// Opens a WebSocket on `/ws` of `addr`.
fn connect(addr: SocketAddr) -> anyhow::Result<WebSocket<MaybeTlsStream<TcpStream>>> {
    let stream = TcpStream::connect(addr).context("connecting the WebSocket")?;
    stream.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    let (socket, _) = tungstenite::client(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
        .context("WebSocket handshake")?;
    Ok(socket)
}

impl Reader {
    /// `stop` ends the thread; `terminating` tells it a closed connection
    /// is expected.
    fn start(
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        terminating: Arc<AtomicBool>,
    ) -> anyhow::Result<Reader> {
        let mut socket = connect(addr)?;
        let counts = Arc::new(ClientCounts::default());
        let seen = counts.clone();
        let thread = std::thread::spawn(move || {
            // Counted locally and merged at the end: a map behind a lock per
            // message would cost the harness CPU the collector needs.
            let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                match socket.read() {
                    Ok(Message::Text(text)) => {
                        let kind = message_type(text.as_str());
                        if kind == "candle" {
                            seen.candles.fetch_add(1, Ordering::Relaxed);
                        }
                        match by_type.get_mut(kind) {
                            Some(n) => *n += 1,
                            None => {
                                by_type.insert(kind.to_string(), 1);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        *seen.ended.lock().unwrap() =
                            Some((e.to_string(), terminating.load(Ordering::Relaxed)));
                        break;
                    }
                }
            }
            *seen.by_type.lock().unwrap() = by_type;
        });
        Ok(Reader { counts, thread })
    }
}

/// The `type` of a server message. Messages are `{"type":"…","data":…}`
/// and the prefix is read directly: parsing 20,000 messages a second per
/// client would take CPU the collector shares on a small machine.
fn message_type(text: &str) -> &str {
    text.strip_prefix(r#"{"type":""#)
        .and_then(|rest| rest.find('"').map(|end| &rest[..end]))
        .unwrap_or("unrecognised")
}

// ---------------------------------------------------------------------------
// /ohlcv latency

/// Latencies of `GET /ohlcv` requests made in a loop until `stop`.
#[derive(Default)]
struct Latencies {
    samples: Vec<Duration>,
    failures: u64,
    candles_last: usize,
}

impl Latencies {
    /// Both threads' samples and failures, as if one had asked them all.
    fn merge(mut self, other: Latencies) -> Latencies {
        self.samples.extend(other.samples);
        self.failures += other.failures;
        self.candles_last = self.candles_last.max(other.candles_last);
        self
    }
}

fn ask_ohlcv_in_a_loop(
    agent: ureq::Agent,
    url: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Latencies> {
    std::thread::spawn(move || {
        let mut out = Latencies {
            samples: Vec::new(),
            failures: 0,
            candles_last: 0,
        };
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = agent.get(&url).call().and_then(|mut response| {
                let ok = response.status() == 200;
                let body = response.body_mut().read_to_string()?;
                Ok((ok, body))
            });
            let took = started.elapsed();
            match answer {
                Ok((true, body)) => {
                    out.samples.push(took);
                    // Counting rows by their timestamps is enough to check
                    // the answer is a full one, without parsing it here.
                    out.candles_last = body.matches(r#""timestamp""#).count();
                }
                _ => out.failures += 1,
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        out
    })
}

/// Nearest-rank percentile of sorted `samples`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------
// The run

/// Everything measured.
struct Report {
    window: Duration,
    updates_per_s: Option<f64>,
    expected_updates_per_s: f64,
    storage_pending_end: f64,
    cpu_percent: f64,
    harness_cpu_percent: Option<f64>,
    /// CPU in the window by thread name: name, threads, time.
    threads: Vec<ThreadCpu>,
    rss_start: u64,
    rss_peak: u64,
    rss_end: u64,
    rss_first_half_peak: u64,
    rss_second_half_peak: u64,
    clients: Vec<ClientFigures>,
    published_per_s: Option<f64>,
    gateway_clients: f64,
    flushes: f64,
    flushes_in_window: f64,
    last_flush_ms: f64,
    rows_written_per_s: Option<f64>,
    storage_queued: f64,
    failed_flushes: f64,
    db_size_bytes: f64,
    ohlcv: Latencies,
    shutdown: Duration,
    exit: Option<ExitStatus>,
    log_warnings: u64,
    log_errors: u64,
    load_after: String,
}

struct ClientFigures {
    candles_per_s: f64,
    by_type: BTreeMap<String, u64>,
    ended: Option<(String, bool)>,
}

impl Report {
    fn exit_ok(&self) -> bool {
        self.exit.is_some_and(|status| status.success())
    }

    fn print(&self, options: &Options, machine: &Machine) {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!();
        println!(
            "machine   {} cores ({}), load avg before {} / after {}",
            machine.cores, machine.model, machine.load_before, self.load_after
        );
        println!(
            "run       {} symbols × {:?} × {}/s, batch {} ms, {} clients{}, {:.1} s measured",
            options.symbols,
            options.intervals,
            options.rate,
            options.batch_interval,
            options.clients,
            if options.stuck_client {
                " + 1 stuck"
            } else {
                ""
            },
            self.window.as_secs_f64()
        );
        match self.updates_per_s {
            Some(rate) => println!(
                "updates   {:.0}/s handled ({:.0}% of the {:.0}/s configured), \
                 {:.0} waiting for storage at the end",
                rate,
                100.0 * rate / self.expected_updates_per_s,
                self.expected_updates_per_s,
                self.storage_pending_end
            ),
            None => println!("updates   n/a (no new heartbeat in the window)"),
        }
        let harness = self
            .harness_cpu_percent
            .map_or_else(|| "?".into(), |p| format!("{p:.0}%"));
        println!(
            "cpu       collector {:.0}% of one core; harness {harness}",
            self.cpu_percent
        );
        println!("threads   {}", thread_shares(&self.threads, self.window));
        if let Some(rate) = self.updates_per_s {
            if self.cpu_percent > 0.0 {
                // The CPU includes serving the /ohlcv loop, which at
                // back-to-back requests can cost more than the updates.
                println!(
                    "ratio     {:.0} updates handled per CPU-second \
                     (the CPU includes serving {:.0} /ohlcv requests/s)",
                    rate / (self.cpu_percent / 100.0),
                    self.ohlcv.samples.len() as f64 / self.window.as_secs_f64()
                );
            }
        }
        println!(
            "rss       start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB \
             (peak in 1st half {:.1}, 2nd half {:.1})",
            mib(self.rss_start),
            mib(self.rss_peak),
            mib(self.rss_end),
            mib(self.rss_first_half_peak),
            mib(self.rss_second_half_peak)
        );
        if let Some(rate) = self.published_per_s {
            // The last heartbeat before SIGTERM: a stuck client the server
            // gave up on is missing from this count.
            println!(
                "gateway   {rate:.0} messages/s published, {} of {} clients connected at the end",
                self.gateway_clients,
                options.clients + usize::from(options.stuck_client)
            );
        }
        for (i, client) in self.clients.iter().enumerate() {
            let types: Vec<String> = client
                .by_type
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            println!(
                "client {i}  {:.0} candles/s; whole run: {}{}",
                client.candles_per_s,
                types.join(", "),
                match &client.ended {
                    Some((why, true)) => format!("; closed at shutdown ({why})"),
                    Some((why, false)) => format!("; ENDED DURING THE RUN: {why}"),
                    None => "; still open after the exit".into(),
                }
            );
        }
        println!(
            "storage   {} flushes ({} in the window, {} failed), last {:.1} ms, \
             {} rows/s written, {} queued at the end, db {:.1} MiB",
            self.flushes,
            self.flushes_in_window,
            self.failed_flushes,
            self.last_flush_ms,
            self.rows_written_per_s
                .map_or_else(|| "?".into(), |r| format!("{r:.0}")),
            self.storage_queued,
            self.db_size_bytes / (1024.0 * 1024.0)
        );
        let mut sorted = self.ohlcv.samples.clone();
        sorted.sort();
        println!(
            "/ohlcv    {} requests ({:.0}/s, {} failed, {} candles each): \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            sorted.len(),
            sorted.len() as f64 / self.window.as_secs_f64(),
            self.ohlcv.failures,
            self.ohlcv.candles_last,
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            ms(sorted.last().copied().unwrap_or_default())
        );
        let exit = match self.exit {
            Some(status) => status.to_string(),
            None => "did not exit, killed".into(),
        };
        println!(
            "shutdown  {:.0} ms after SIGTERM, {exit}; log: {} warnings, {} errors",
            ms(self.shutdown),
            self.log_warnings,
            self.log_errors
        );
    }
}

fn measure(options: &Options, collector: &mut Collector) -> anyhow::Result<Report> {
    let pid = collector.pid();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let terminating = Arc::new(AtomicBool::new(false));
    let readers = (0..options.clients)
        .map(|_| Reader::start(collector.addr, stop_clients.clone(), terminating.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Held, never read, until the collector has exited.
    let stuck = if options.stuck_client {
        Some(connect(collector.addr)?)
    } else {
        None
    };

    collector.wait_streaming(Duration::from_secs(options.startup_timeout))?;
    eprintln!("load: streaming; measuring for {} s", options.seconds);

    let first = collector.status()?;
    let started = Instant::now();
    let cpu_start = cpu_time(pid).context("reading /proc/<pid>/stat")?;
    let threads_start = thread_cpu_times(pid);
    let harness_cpu_start = cpu_time(std::process::id());
    let candles_start: Vec<u64> = readers
        .iter()
        .map(|r| r.counts.candles.load(Ordering::Relaxed))
        .collect();
    let stop_ohlcv = Arc::new(AtomicBool::new(false));
    let ohlcv: Vec<JoinHandle<Latencies>> = (0..options.ohlcv_threads.max(1))
        .map(|_| {
            ask_ohlcv_in_a_loop(
                collector.agent.clone(),
                format!(
                    "http://{}/ohlcv/simulated/{}/{}?limit=1000",
                    collector.addr, SYMBOLS[0], options.intervals[0]
                ),
                Duration::from_millis(options.ohlcv_pause_ms),
                stop_ohlcv.clone(),
            )
        })
        .collect();

    let rss_start = rss_bytes(pid).unwrap_or(0);
    let (mut rss_peak, mut rss_end) = (rss_start, rss_start);
    let (mut first_half_peak, mut second_half_peak) = (rss_start, 0);
    let window = Duration::from_secs(options.seconds);
    let mut next = started;
    while started.elapsed() < window {
        next += SAMPLE_PERIOD;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if let Some(rss) = rss_bytes(pid) {
            rss_peak = rss_peak.max(rss);
            rss_end = rss;
            if started.elapsed() < window / 2 {
                first_half_peak = first_half_peak.max(rss);
            } else {
                second_half_peak = second_half_peak.max(rss);
            }
        }
        if collector.child.try_wait()?.is_some() {
            bail!("the collector exited during the run");
        }
    }
    let elapsed = started.elapsed();
    let cpu_end = cpu_time(pid).context("reading /proc/<pid>/stat")?;
    let threads = cpu_by_thread_name(&threads_start, &thread_cpu_times(pid));
    let harness_cpu_end = cpu_time(std::process::id());
    let candles_end: Vec<u64> = readers
        .iter()
        .map(|r| r.counts.candles.load(Ordering::Relaxed))
        .collect();
    stop_ohlcv.store(true, Ordering::Relaxed);
    let ohlcv = ohlcv
        .into_iter()
        .map(|thread| thread.join().expect("an /ohlcv thread panicked"))
        .fold(Latencies::default(), Latencies::merge);
    let last = collector.status()?;
    let load_after = load_average();

    let updates_per_s = rate(&first.datasource, &last.datasource, |m| m.updates as f64);
    let published_per_s = rate(&first.gateway, &last.gateway, |m| m.published as f64);
    let series = options.symbols as f64 * options.intervals.len() as f64;
    let cpu_percent = 100.0 * (cpu_end - cpu_start).as_secs_f64() / elapsed.as_secs_f64();
    let harness_cpu_percent = harness_cpu_start
        .zip(harness_cpu_end)
        .map(|(a, b)| 100.0 * (b - a).as_secs_f64() / elapsed.as_secs_f64());
    let storage_pending_end = metric(&last.datasource, |m| m.storage_pending as f64);

    eprintln!("load: sending SIGTERM");
    terminating.store(true, Ordering::Relaxed);
    let (exit, shutdown) = collector.terminate(Duration::from_secs(options.shutdown_timeout))?;
    drop(stuck);
    stop_clients.store(true, Ordering::Relaxed);
    let clients = readers
        .into_iter()
        .zip(candles_start.iter().zip(&candles_end))
        .map(|(reader, (a, b))| {
            let _ = reader.thread.join();
            let counts = &reader.counts;
            ClientFigures {
                candles_per_s: (b - a) as f64 / elapsed.as_secs_f64(),
                by_type: std::mem::take(&mut *counts.by_type.lock().unwrap()),
                ended: counts.ended.lock().unwrap().take(),
            }
        })
        .collect::<Vec<_>>();
    let gateway_clients = metric(&last.gateway, |m| m.clients as f64);
    let flushes = |m: &StorageMetrics| m.stats.flushes as f64;
    Ok(Report {
        window: elapsed,
        updates_per_s,
        expected_updates_per_s: series * options.rate,
        storage_pending_end,
        cpu_percent,
        harness_cpu_percent,
        threads,
        rss_start,
        rss_peak,
        rss_end,
        rss_first_half_peak: first_half_peak,
        rss_second_half_peak: second_half_peak,
        clients,
        published_per_s,
        gateway_clients,
        flushes: metric(&last.storage, flushes),
        flushes_in_window: metric(&last.storage, flushes) - metric(&first.storage, flushes),
        last_flush_ms: metric(&last.storage, |m| m.stats.last_flush_ms),
        rows_written_per_s: rate(&first.storage, &last.storage, |m| {
            m.stats.rows_written as f64
        }),
        storage_queued: metric(&last.storage, |m| m.stats.queued as f64),
        failed_flushes: metric(&last.storage, |m| m.stats.failed_flushes as f64),
        db_size_bytes: metric(&last.storage, |m| m.stats.db_size_bytes as f64),
        ohlcv,
        shutdown,
        exit,
        log_warnings: collector.stderr.warnings.load(Ordering::Relaxed),
        log_errors: collector.stderr.errors.load(Ordering::Relaxed),
        load_after,
    })
}

// ---------------------------------------------------------------------------
// The bootstrap of history (`--bootstrap`)

/// How often the harness counts the stored rows in `--bootstrap` mode,
/// once the datasource streams.
const ROW_COUNT_PERIOD: Duration = Duration::from_millis(250);

/// How often the harness looks whether the datasource streams (its log
/// line) in `--bootstrap` mode.
const STATUS_PERIOD: Duration = Duration::from_millis(100);

/// What the `--bootstrap` mode measured.
struct BootstrapReport {
    series: usize,
    expected: u64,
    /// From the collector's start to `streaming`, and to the first count
    /// that found every candle of history stored.
    streaming_after: Duration,
    stored_after: Option<Duration>,
    stored: u64,
    /// Collector CPU from its start to `stored_after`.
    cpu: Duration,
    threads: Vec<ThreadCpu>,
    rss_peak: u64,
    flushes: f64,
    shutdown: Duration,
    exit: Option<ExitStatus>,
    log_warnings: u64,
    log_errors: u64,
    load_after: String,
}

impl BootstrapReport {
    fn exit_ok(&self) -> bool {
        self.exit.is_some_and(|status| status.success())
    }

    fn print(&self, options: &Options, machine: &Machine) {
        println!();
        println!(
            "machine   {} cores ({}), load avg before {} / after {}",
            machine.cores, machine.model, machine.load_before, self.load_after
        );
        println!(
            "run       bootstrap of {} series ({} symbols × {:?}) × {} candles = {} candles, \
             batch {} ms, live {}/s per series",
            self.series,
            options.symbols,
            options.intervals,
            options.bootstrap_load.unwrap_or(1000),
            self.expected,
            options.batch_interval,
            options.rate
        );
        match self.stored_after {
            Some(stored) => println!(
                "bootstrap streaming after {:.2} s; all {} candles stored after {:.2} s: \
                 {:.0} candles/s from start",
                self.streaming_after.as_secs_f64(),
                self.stored,
                stored.as_secs_f64(),
                self.stored as f64 / stored.as_secs_f64().max(1e-9)
            ),
            None => println!(
                "bootstrap streaming after {:.2} s; only {} of {} candles stored at the deadline",
                self.streaming_after.as_secs_f64(),
                self.stored,
                self.expected
            ),
        }
        println!(
            "cpu       collector {:.0} ms from start = {:.2} CPU-ms per 1000 candles; by thread: {}",
            self.cpu.as_secs_f64() * 1000.0,
            self.cpu.as_secs_f64() * 1e6 / self.expected.max(1) as f64,
            self.threads
                .iter()
                .take(6)
                .map(|t| format!("{} {:.0} ms", t.name, t.total.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "memory    RSS peak {:.1} MiB; storage flushes {}",
            self.rss_peak as f64 / (1024.0 * 1024.0),
            self.flushes
        );
        println!(
            "shutdown  {:.2} s, exit {:?}; log warnings {}, errors {}",
            self.shutdown.as_secs_f64(),
            self.exit,
            self.log_warnings,
            self.log_errors
        );
    }
}

/// Rows of the `ohlcv` table or view in the database at `path`; 0 while it
/// does not exist yet.
fn stored_rows(path: &Path) -> u64 {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    rusqlite::Connection::open_with_flags(path, flags)
        .and_then(|db| db.query_row("SELECT count(*) FROM ohlcv", [], |row| row.get::<_, i64>(0)))
        .map_or(0, |n| n.max(0) as u64)
}

fn measure_bootstrap(
    options: &Options,
    collector: &mut Collector,
    dir: &Path,
    launched: Instant,
) -> anyhow::Result<BootstrapReport> {
    let pid = collector.pid();
    let series = options.symbols * options.intervals.len();
    let expected = series as u64 * options.bootstrap_load.unwrap_or(1000);
    let db = dir.join("data").join("ohlcv.db");
    let deadline = launched + Duration::from_secs(options.startup_timeout);
    let (mut streaming_after, mut stored_after) = (None, None);
    let mut stored = 0;
    let mut rss_peak = 0;
    while Instant::now() < deadline {
        if streaming_after.is_none() {
            streaming_after = collector
                .stderr
                .streaming
                .lock()
                .unwrap()
                .map(|at| at.saturating_duration_since(launched));
        }
        // Counting a million rows costs CPU the collector wants too: the
        // rows are counted only once the datasource streams (its history
        // is all handed over by then; what is left is the last writes).
        if streaming_after.is_some() {
            stored = stored_rows(&db);
        }
        rss_peak = rss_peak.max(rss_bytes(pid).unwrap_or(0));
        if stored >= expected {
            stored_after = Some(launched.elapsed());
            if streaming_after.is_some() {
                break;
            }
        }
        if collector.child.try_wait()?.is_some() {
            bail!("the collector exited during the bootstrap");
        }
        std::thread::sleep(if streaming_after.is_some() {
            ROW_COUNT_PERIOD
        } else {
            STATUS_PERIOD
        });
    }
    let cpu = cpu_time(pid).context("reading /proc/<pid>/stat")?;
    let threads = cpu_by_thread_name(&BTreeMap::new(), &thread_cpu_times(pid));
    let last = collector.status()?;
    let load_after = load_average();
    eprintln!("load: sending SIGTERM");
    let (exit, shutdown) = collector.terminate(Duration::from_secs(options.shutdown_timeout))?;
    Ok(BootstrapReport {
        series,
        expected,
        streaming_after: streaming_after.unwrap_or_else(|| launched.elapsed()),
        stored_after,
        stored,
        cpu,
        threads,
        rss_peak,
        flushes: metric(&last.storage, |m| m.stats.flushes as f64),
        shutdown,
        exit,
        log_warnings: collector.stderr.warnings.load(Ordering::Relaxed),
        log_errors: collector.stderr.errors.load(Ordering::Relaxed),
        load_after,
    })
}

// ---------------------------------------------------------------------------
// The flood from a fake exchange (`--exchange`)

/// What the `--exchange` mode measured.
struct FloodReport {
    exchange: FloodExchange,
    connections: usize,
    symbols: usize,
    /// Frames the fake was asked for, all connections together.
    frames_asked: u64,
    /// Frames the fake pushed from the flood's start until it had pushed
    /// `frames_asked` (its normal pushes included), and how long that took.
    sent: u64,
    sending: Duration,
    /// `updates` (and `rejected`) the datasource counted since the flood
    /// started, at the heartbeat that showed them all.
    updates: u64,
    rejected: u64,
    /// The time from the flood's start to the heartbeat that showed every
    /// frame handled (an upper bound, heartbeats come every 3 s), and to
    /// the heartbeat before it or the fake's last frame, whichever was
    /// later (a lower bound: not all were handled then).
    handled_within: Duration,
    handled_after: Duration,
    /// `updates`/s between two heartbeats that both fell inside the flood.
    steady_per_s: Option<f64>,
    /// The run ended at `--flood-timeout` before every frame was handled.
    timed_out: bool,
    /// Collector CPU from the flood's start to `handled_within`.
    cpu: Duration,
    threads: Vec<ThreadCpu>,
    harness_cpu: Option<Duration>,
    fake_thread_cpu: Option<Duration>,
    rss_start: u64,
    rss_peak: u64,
    rss_end: u64,
    rows_written: f64,
    flushes: f64,
    failed_flushes: f64,
    last_flush_ms: f64,
    storage_queued: f64,
    storage_pending: f64,
    db_size_bytes: f64,
    reconnects: u64,
    shutdown: Duration,
    exit: Option<ExitStatus>,
    log_warnings: u64,
    log_errors: u64,
    load_after: String,
}

impl FloodReport {
    fn exit_ok(&self) -> bool {
        self.exit.is_some_and(|status| status.success())
    }

    fn print(&self, options: &Options, machine: &Machine) {
        let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!();
        println!(
            "machine   {} cores ({}), load avg before {} / after {}",
            machine.cores, machine.model, machine.load_before, self.load_after
        );
        println!(
            "run       fake {:?} over ws://127.0.0.1, {} symbols × 1m, {} connection(s) × {} frames, \
             batch {} ms",
            self.exchange, self.symbols, self.connections, options.frames, options.batch_interval
        );
        println!(
            "fake      {} frames sent in {:.2} s: {:.0} frames/s ({} asked for)",
            self.sent,
            self.sending.as_secs_f64(),
            per_s(self.sent, self.sending),
            self.frames_asked
        );
        println!(
            "collector {} updates ({} rejected) within {:.2} s, after more than {:.2} s: \
             {:.0} to {:.0} frames/s end to end{}{}",
            self.updates,
            self.rejected,
            self.handled_within.as_secs_f64(),
            self.handled_after.as_secs_f64(),
            per_s(self.updates, self.handled_within),
            per_s(self.updates, self.handled_after),
            self.steady_per_s.map_or_else(String::new, |r| format!(
                ", {r:.0}/s between heartbeats inside the flood"
            )),
            if self.timed_out {
                "; TIMED OUT before every frame was handled"
            } else {
                ""
            }
        );
        let per_1000 = |cpu: Duration| ms(cpu) * 1000.0 / (self.updates.max(1) as f64);
        let opt_ms =
            |cpu: Option<Duration>| cpu.map_or_else(|| "?".into(), |c| format!("{:.0}", ms(c)));
        println!(
            "cpu       collector {:.0} ms = {:.2} CPU-ms per 1000 frames ({:.0}% of one core over {:.2} s); \
             harness {} ms, of which the fake's thread {} ms",
            ms(self.cpu),
            per_1000(self.cpu),
            100.0 * self.cpu.as_secs_f64() / self.handled_within.as_secs_f64().max(1e-9),
            self.handled_within.as_secs_f64(),
            opt_ms(self.harness_cpu),
            opt_ms(self.fake_thread_cpu)
        );
        println!(
            "threads   {}",
            thread_shares(&self.threads, self.handled_within)
        );
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        println!(
            "rss       start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
            mib(self.rss_start as f64),
            mib(self.rss_peak as f64),
            mib(self.rss_end as f64)
        );
        println!(
            "storage   {} rows written in {} flushes since the flood started ({} failed), \
             last {:.1} ms, {} queued and {} waiting in the datasource at the end, db {:.1} MiB",
            self.rows_written,
            self.flushes,
            self.failed_flushes,
            self.last_flush_ms,
            self.storage_queued,
            self.storage_pending,
            mib(self.db_size_bytes)
        );
        let exit = match self.exit {
            Some(status) => status.to_string(),
            None => "did not exit, killed".into(),
        };
        println!(
            "shutdown  {:.0} ms after SIGTERM, {exit}; {} reconnects; log: {} warnings, {} errors",
            ms(self.shutdown),
            self.reconnects,
            self.log_warnings,
            self.log_errors
        );
    }
}

/// CPU time of the harness's threads named `name`.
fn own_thread_cpu(name: &str) -> Option<Duration> {
    let threads = thread_cpu_times(std::process::id());
    let mut found = threads.values().filter(|(n, _)| n == name).peekable();
    found.peek()?;
    Some(found.map(|(_, cpu)| *cpu).sum())
}

fn measure_flood(
    options: &Options,
    collector: &mut Collector,
    fake: &FakeExchange,
) -> anyhow::Result<FloodReport> {
    let exchange = options.exchange.context("no --exchange")?;
    let pid = collector.pid();
    let fake_thread = format!("fake-{:?}", exchange.venue()).to_lowercase();
    collector.wait_streaming(Duration::from_secs(options.startup_timeout))?;
    let connections = fake
        .connections()
        .iter()
        .filter(|c| c.closed_at.is_none() && !c.subscriptions.is_empty())
        .count();
    ensure!(
        connections > 0,
        "the datasource streams but no connection to the fake has a subscription"
    );
    let frames_asked = options.frames * connections as u64;
    eprintln!(
        "load: streaming over {connections} connection(s); flooding {} frames each",
        options.frames
    );

    let first = collector.status()?;
    let count = |s: &Status| {
        let m = s.datasource.metrics.as_ref();
        (
            m.map_or(0, |m| m.updates),
            m.map_or(0, |m| m.rejected),
            m.map_or(0, |m| m.common.timestamp),
        )
    };
    let (updates0, rejected0, _) = count(&first);
    let cpu_start = cpu_time(pid).context("reading /proc/<pid>/stat")?;
    let threads_start = thread_cpu_times(pid);
    let harness_cpu_start = cpu_time(std::process::id());
    let fake_cpu_start = own_thread_cpu(&fake_thread);
    let rss_start = rss_bytes(pid).unwrap_or(0);
    let (mut rss_peak, mut rss_end) = (rss_start, rss_start);
    let sent0 = fake.frames_sent();
    let started = Instant::now();
    let started_ms = ohlcv_domain::time::now_ms();
    fake.flood(options.frames);

    let deadline = started + Duration::from_secs(options.flood_timeout);
    let since_start = |at_ms: i64| Duration::from_millis((at_ms - started_ms).max(0) as u64);
    // When the fake had pushed every frame asked, and its count then.
    let mut sent_done: Option<(Duration, u64)> = None;
    // Heartbeats seen since the flood started: (ms after it, updates).
    let mut beats: Vec<(Duration, u64)> = Vec::new();
    let mut last_beat_ms = count(&first).2;
    let mut next_status = started;
    let (mut timed_out, mut cpu_end) = (false, cpu_start);
    let mut threads_end;
    let (handled, handled_within, handled_after) = loop {
        std::thread::sleep(FRAME_POLL_PERIOD);
        let sent = fake.frames_sent() - sent0;
        if sent_done.is_none() && sent >= frames_asked {
            sent_done = Some((started.elapsed(), sent));
        }
        if Instant::now() < next_status {
            continue;
        }
        next_status += STATUS_POLL_PERIOD;
        if let Some(rss) = rss_bytes(pid) {
            rss_peak = rss_peak.max(rss);
            rss_end = rss;
        }
        if collector.child.try_wait()?.is_some() {
            bail!("the collector exited during the flood");
        }
        let status = collector.status()?;
        let (updates, rejected, beat_ms) = count(&status);
        let handled = (updates - updates0) + (rejected - rejected0);
        if beat_ms > last_beat_ms {
            last_beat_ms = beat_ms;
            beats.push((since_start(beat_ms), updates - updates0));
            cpu_end = cpu_time(pid).unwrap_or(cpu_end);
            threads_end = thread_cpu_times(pid);
            if let Some((sent_at, sent)) = sent_done {
                if handled >= sent {
                    let before = beats
                        .iter()
                        .rev()
                        .nth(1)
                        .map_or(Duration::ZERO, |(at, _)| *at);
                    break (status, since_start(beat_ms), before.max(sent_at));
                }
            }
        }
        if Instant::now() > deadline {
            timed_out = true;
            let at = started.elapsed();
            cpu_end = cpu_time(pid).unwrap_or(cpu_end);
            threads_end = thread_cpu_times(pid);
            break (status, at, sent_done.map_or(at, |(sent_at, _)| sent_at));
        }
    };
    let harness_cpu = harness_cpu_start
        .zip(cpu_time(std::process::id()))
        .map(|(a, b)| b - a);
    let fake_thread_cpu = fake_cpu_start
        .zip(own_thread_cpu(&fake_thread))
        .map(|(a, b)| b - a);
    let (sending, sent) = sent_done.unwrap_or((started.elapsed(), fake.frames_sent() - sent0));
    // Rate between two heartbeats that both fell inside the flood: the
    // first after the start and the last before every frame was handled.
    let total = count(&handled).0 - updates0;
    let inside: Vec<&(Duration, u64)> = beats.iter().filter(|(_, u)| *u < total).collect();
    let steady_per_s = match (inside.first(), inside.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64()),
        _ => None,
    };

    // A batch write after the flood, so the rows are on disk, not only
    // queued: socket to SQLite row.
    let flushes = |s: &Status| metric(&s.storage, |m| m.stats.flushes as f64);
    let mut last = handled;
    let flushed_by =
        Instant::now() + Duration::from_millis(options.batch_interval) * 2 + Duration::from_secs(7);
    while flushes(&last) <= flushes(&first)
        || last
            .storage
            .metrics
            .as_ref()
            .is_some_and(|m| m.common.timestamp <= started_ms + handled_within.as_millis() as i64)
    {
        if Instant::now() > flushed_by {
            break;
        }
        std::thread::sleep(STATUS_POLL_PERIOD);
        last = collector.status()?;
    }
    let load_after = load_average();

    eprintln!("load: sending SIGTERM");
    let (exit, shutdown) = collector.terminate(Duration::from_secs(options.shutdown_timeout))?;
    let storage = |figure: fn(&StorageMetrics) -> f64| metric(&last.storage, figure);
    let storage0 = |figure: fn(&StorageMetrics) -> f64| metric(&first.storage, figure);
    Ok(FloodReport {
        exchange,
        connections,
        symbols: options.symbols.min(FAKE_SYMBOLS),
        frames_asked,
        sent,
        sending,
        updates: total,
        rejected: count(&last).1 - rejected0,
        handled_within,
        handled_after,
        steady_per_s,
        timed_out,
        cpu: cpu_end - cpu_start,
        threads: cpu_by_thread_name(&threads_start, &threads_end),
        harness_cpu,
        fake_thread_cpu,
        rss_start,
        rss_peak,
        rss_end,
        rows_written: storage(|m| m.stats.rows_written as f64)
            - storage0(|m| m.stats.rows_written as f64),
        flushes: storage(|m| m.stats.flushes as f64) - storage0(|m| m.stats.flushes as f64),
        failed_flushes: storage(|m| m.stats.failed_flushes as f64)
            - storage0(|m| m.stats.failed_flushes as f64),
        last_flush_ms: storage(|m| m.stats.last_flush_ms),
        storage_queued: storage(|m| m.stats.queued as f64),
        storage_pending: metric(&last.datasource, |m| m.storage_pending as f64),
        db_size_bytes: storage(|m| m.stats.db_size_bytes as f64),
        reconnects: count_reconnects(&last) - count_reconnects(&first),
        shutdown,
        exit,
        log_warnings: collector.stderr.warnings.load(Ordering::Relaxed),
        log_errors: collector.stderr.errors.load(Ordering::Relaxed),
        load_after,
    })
}

fn count_reconnects(status: &Status) -> u64 {
    status
        .datasource
        .metrics
        .as_ref()
        .map_or(0, |m| m.reconnects)
}
