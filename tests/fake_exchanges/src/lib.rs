//! Fake Binance USDT-M futures, Bybit v5 linear and OKX v5 swap servers on
//! 127.0.0.1, for the collector's end-to-end tests and load harness.
//!
//! The real exchanges cannot be reached from the tests, so each fake speaks
//! its venue's *documented* wire format itself (REST and WebSocket on one
//! port, optionally over TLS), serves a deterministic [`Market`] the tests
//! can compare the database with, records what clients did, and offers
//! controls to inject the failures a collector must survive. The crate does
//! not use the collector's adapters: a wrong field must not agree with
//! itself.

mod binance;
mod bybit;
mod market;
mod okx;
mod server;
mod tls;
mod ws;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ohlcv_domain::Interval;
use tokio::sync::mpsc::UnboundedSender;

pub use market::{FakeCandle, Market};

/// Which exchange a [`FakeExchange`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Venue {
    /// Binance USDⓈ-M futures (`/fapi/v1/...`, `/market/stream`).
    Binance,
    /// Bybit v5, linear category (`/v5/market/...`, `/v5/public/linear`).
    Bybit,
    /// OKX v5, SWAP instruments (`/api/v5/...`, `/ws/v5/business`).
    Okx,
}

/// How a fake behaves; tests shorten the periods so keep-alive and
/// reconnection paths run in seconds.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Serve https/wss with a certificate made at start for `localhost` and
    /// 127.0.0.1 (see [`FakeExchange::ca_cert_path`]), so the collector's
    /// real TLS stack is exercised.
    pub tls: bool,
    /// Live push period of every subscribed series.
    pub update_period: Duration,
    /// Keep-alive deadline: Binance drops a connection that has not answered
    /// a server ping within it, Bybit one that sent no `ping` op within it,
    /// OKX one without any traffic in either direction within it.
    pub keepalive_timeout: Duration,
    /// Period of Binance's server ping frames (documented: 3 minutes).
    pub binance_ping_period: Duration,
    /// The server closes a WebSocket connection this long after it opened
    /// (Binance documents 24 h); `None` never.
    pub max_connection_age: Option<Duration>,
    /// First candle open time the market has; nothing exists before it.
    pub listed_since_ms: i64,
    /// Holes the exchange itself has, as (symbol, interval, first open time,
    /// last open time inclusive): REST returns no rows there and the live
    /// stream never pushes them, so a collector must not loop on them.
    pub missing: Vec<(String, Interval, i64, i64)>,
    /// Page size of Bybit's instruments cursor (small, so pagination runs).
    pub instruments_page_size: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            tls: false,
            update_period: Duration::from_millis(250),
            keepalive_timeout: Duration::from_secs(30),
            binance_ping_period: Duration::from_secs(180),
            max_connection_age: None,
            listed_since_ms: Interval::D1.align(now_ms() - 30 * 86_400_000),
            missing: Vec::new(),
            instruments_page_size: 2,
        }
    }
}

/// What the live streams do; switched at run time with
/// [`FakeExchange::set_live_mode`] to imitate a silent or half-dead server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveMode {
    /// Data, acks and keep-alive answers as documented.
    Normal,
    /// The sockets stay open but nothing at all is sent: no data, no pings,
    /// no pongs, no acks (a stalled server; only the client's own timers
    /// can notice).
    Stalled,
    /// Keep-alive answered and acks sent, but no data (a quiet market
    /// feed; liveness checks pass, data checks must notice).
    Quiet,
}

/// One HTTP request the fake answered, to check a client's paging, pacing
/// and back-off.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// When it was received.
    pub at: Instant,
    /// Path without the query, `/fapi/v1/klines`.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Status answered.
    pub status: u16,
}

/// One WebSocket connection the fake accepted, to check a client's
/// connection count, subscriptions and reconnections.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Id, from 1, in accept order.
    pub id: u64,
    /// Request target of the upgrade, `/market/stream?streams=...`.
    pub path_and_query: String,
    /// When the upgrade was answered.
    pub opened_at: Instant,
    /// When the connection ended, if it did.
    pub closed_at: Option<Instant>,
    /// The venue topics currently subscribed: Binance stream names
    /// (`btcusdt@kline_1m`), Bybit topics (`kline.1.BTCUSDT`), OKX
    /// `channel:instId` (`candle1m:BTC-USDT-SWAP`).
    pub subscriptions: Vec<String>,
    /// Why it ended (`client close`, `keepalive timeout`, `disconnect_all`, …).
    pub close_reason: Option<String>,
}

/// A text frame a WebSocket client sent.
#[derive(Debug, Clone)]
pub struct ClientMessage {
    /// [`ConnectionInfo::id`] of its connection.
    pub connection: u64,
    /// When it was received.
    pub at: Instant,
    /// The frame's text.
    pub text: String,
}

pub(crate) enum Control {
    Disconnect,
    Garbage,
    Notice,
    Flood(u64),
}

pub(crate) struct FailRest {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub count: usize,
}

#[derive(Default)]
pub(crate) struct State {
    pub rest_requests: Vec<RestRequest>,
    pub connections: Vec<ConnectionInfo>,
    pub client_messages: Vec<ClientMessage>,
    pub controls: HashMap<u64, UnboundedSender<Control>>,
    pub fail: Option<FailRest>,
    pub refused: HashSet<String>,
    /// (window start ms, weight or count used in it) for rate-limit headers.
    pub used: (i64, u64),
}

pub(crate) struct Shared {
    pub venue: Venue,
    pub options: FakeOptions,
    pub market: Market,
    state: Mutex<State>,
    mode: AtomicU8,
    pub frames_sent: AtomicU64,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> LiveMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => LiveMode::Stalled,
            2 => LiveMode::Quiet,
            _ => LiveMode::Normal,
        }
    }

    /// Whether subscriptions and REST requests of this market symbol are
    /// refused.
    pub fn refused(&self, symbol: &str) -> bool {
        self.state().refused.contains(&canonical_symbol(symbol))
    }
}

/// `BTC-USDT-SWAP`, `btcusdt` → `BTCUSDT`.
pub(crate) fn canonical_symbol(s: &str) -> String {
    let s = s.to_ascii_uppercase();
    let s = s.strip_suffix("-SWAP").unwrap_or(&s);
    s.replace('-', "")
}

/// Wall-clock UTC milliseconds: candle times follow the real clock, like
/// the exchanges'.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running fake exchange: one listener on 127.0.0.1 serving the venue's
/// REST API and WebSocket streams, on its own thread. Dropping it stops the
/// thread and closes every socket.
pub struct FakeExchange {
    shared: Arc<Shared>,
    port: u16,
    ca_path: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeExchange {
    /// Binds 127.0.0.1:0 and serves `venue` on its own thread (a tokio
    /// current-thread runtime); returns once the port is listening.
    ///
    /// # Panics
    /// When the port cannot be bound or the certificate cannot be made.
    pub fn start(venue: Venue, options: FakeOptions) -> FakeExchange {
        let market = Market::new(options.listed_since_ms, options.missing.clone());
        let shared = Arc::new(Shared {
            venue,
            options,
            market,
            state: Mutex::new(State::default()),
            mode: AtomicU8::new(0),
            frames_sent: AtomicU64::new(0),
        });
        let tls = if shared.options.tls {
            Some(tls::make_certificates().expect("make the fake's certificates"))
        } else {
            None
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let thread = std::thread::Builder::new()
            .name(format!("fake-{venue:?}").to_lowercase())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the fake's runtime");
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let port = listener.local_addr().map(|a| a.port());
                    let _ = ready_tx.send(port);
                    server::serve(listener, acceptor, thread_shared, shutdown_rx).await;
                });
            })
            .expect("spawn the fake's thread");
        let port = ready_rx
            .recv()
            .expect("fake thread ended before listening")
            .expect("bind 127.0.0.1:0");
        let ca_path = tls.map(|t| {
            let path = std::env::temp_dir()
                .join(format!("ohlcv-fake-{}-{port}-ca.pem", std::process::id()));
            std::fs::write(&path, t.ca_pem).expect("write the fake's CA certificate");
            path
        });
        FakeExchange {
            shared,
            port,
            ca_path,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    fn host(&self) -> &'static str {
        if self.shared.options.tls {
            "localhost"
        } else {
            "127.0.0.1"
        }
    }

    /// Base URL of the REST API, `http://127.0.0.1:PORT` (or
    /// `https://localhost:PORT` with TLS); the client appends the paths.
    pub fn rest_url(&self) -> String {
        let scheme = if self.shared.options.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.host(), self.port)
    }

    /// Base URL of the streams, `ws://127.0.0.1:PORT` (or
    /// `wss://localhost:PORT`); the client appends the documented path.
    pub fn ws_url(&self) -> String {
        let scheme = if self.shared.options.tls { "wss" } else { "ws" };
        format!("{scheme}://{}:{}", self.host(), self.port)
    }

    /// With TLS, a PEM file holding the CA certificate that signed the
    /// server's certificate, for `SSL_CERT_FILE` or an explicit trust store.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.ca_path.clone()
    }

    /// The truth: what this exchange holds.
    pub fn market(&self) -> Market {
        self.shared.market.clone()
    }

    /// Every HTTP request received, in order.
    pub fn rest_requests(&self) -> Vec<RestRequest> {
        self.shared.state().rest_requests.clone()
    }

    /// Every WebSocket connection ever accepted, in order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.state().connections.clone()
    }

    /// Every text frame WebSocket clients sent, in order.
    pub fn client_messages(&self) -> Vec<ClientMessage> {
        self.shared.state().client_messages.clone()
    }

    fn control(&self, make: impl Fn() -> Control) {
        for tx in self.shared.state().controls.values() {
            let _ = tx.send(make());
        }
    }

    /// Closes every WebSocket connection abruptly (TCP close, no close
    /// frame), like a network failure.
    pub fn disconnect_all(&self) {
        self.control(|| Control::Disconnect);
    }

    /// Switches the live streams of existing and new connections.
    pub fn set_live_mode(&self, mode: LiveMode) {
        let v = match mode {
            LiveMode::Normal => 0,
            LiveMode::Stalled => 1,
            LiveMode::Quiet => 2,
        };
        self.shared.mode.store(v, Ordering::SeqCst);
    }

    /// The next `count` REST requests are answered with `status` (429, 418,
    /// 500, 503, …) and the venue's documented error body, plus
    /// `Retry-After: <secs>` when given: back-off must be exercised.
    pub fn fail_rest(&self, status: u16, retry_after: Option<Duration>, count: usize) {
        self.shared.state().fail = Some(FailRest {
            status,
            retry_after,
            count,
        });
    }

    /// Refuses subscriptions of `symbol` with the venue's documented error
    /// answer, and REST kline requests for it as an unknown symbol.
    pub fn refuse_symbol(&self, symbol: &str) {
        self.shared.state().refused.insert(canonical_symbol(symbol));
    }

    /// Sends every connection malformed JSON, an unknown event, a kline
    /// missing a field, klines with absurd values (negative price; high <
    /// low) and a binary frame: a collector must skip them and carry on.
    pub fn send_garbage(&self) {
        self.control(|| Control::Garbage);
    }

    /// OKX: sends every connection the `64008` service-upgrade notice and
    /// closes them 5 s later. No-op on the other venues.
    pub fn send_notice(&self) {
        if self.shared.venue == Venue::Okx {
            self.control(|| Control::Notice);
        }
    }

    /// Load harness: pushes `frames_per_connection` kline updates (the
    /// current open candles' values) to each connection as fast as the
    /// socket takes them, then goes back to normal.
    pub fn flood(&self, frames_per_connection: u64) {
        self.control(|| Control::Flood(frames_per_connection));
    }

    /// Kline data frames pushed so far, all connections together.
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::SeqCst)
    }
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.ca_path {
            let _ = std::fs::remove_file(p);
        }
    }
}
