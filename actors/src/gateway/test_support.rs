//! What the gateway tests share: a recording [`Control`], a real storage
//! thread on a temporary SQLite file, recorders for heartbeats and child
//! exits, and a condition wait.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use ohlcv_domain::config::{ApiToken, Config, ExchangeConfig};
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_storage::rescue::RescueFile;
use ohlcv_storage::Database;
use tempfile::TempDir;

use super::broadcast::Broadcaster;
use super::logs::LogHistory;
use super::{GatewayDeps, GatewaySettings};
use crate::control::{ApplyReport, ChildStatus, Control, ControlError, StatusReport};
use crate::lifecycle::{ChildExited, ChildId, Heartbeat, HeartbeatSink, LifeGuard};
use crate::storage::{spawn_storage, StorageChannels, StorageSettings};

/// The config the mock supervisor starts with.
pub(crate) const CONFIG: &str = r#"{
  "exchanges": {
    "simulated": { "enabled": true, "symbols": ["BTCUSDT", "ETHUSDT"] },
    "binance_futures": { "enabled": false, "symbols": ["BTCUSDT"] }
  },
  "intervals": ["1m", "5m"],
  "batch_interval": 60000
}"#;

/// A supervisor stand-in: records every call, keeps a config, and fails
/// every call with `failure` while one is set.
pub(crate) struct MockControl {
    pub calls: Mutex<Vec<String>>,
    pub config: Mutex<Config>,
    pub failure: Mutex<Option<ControlError>>,
}

impl MockControl {
    pub fn new() -> Self {
        MockControl {
            calls: Mutex::default(),
            config: Mutex::new(Config::from_json(CONFIG).unwrap()),
            failure: Mutex::default(),
        }
    }

    /// Sets (or removes) the running config's `api_token`, as a POST
    /// /config or a restart with an edited file would.
    pub fn set_token(&self, token: Option<&str>) {
        self.config.lock().unwrap().api_token = token.map(|t| ApiToken::new(t).unwrap());
    }

    pub fn fail_with(&self, error: Option<ControlError>) {
        *self.failure.lock().unwrap() = error;
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) -> Result<(), ControlError> {
        self.calls.lock().unwrap().push(call);
        match self.failure.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn report() -> ApplyReport {
        ApplyReport {
            reloaded: vec![ExchangeId::Simulated],
            ..ApplyReport::default()
        }
    }
}

#[async_trait]
impl Control for MockControl {
    async fn config(&self) -> Result<Config, ControlError> {
        self.record("config".into())?;
        Ok(self.config.lock().unwrap().clone())
    }

    async fn replace_config(&self, config: Config) -> Result<ApplyReport, ControlError> {
        self.record(format!("replace_config port={}", config.port))?;
        *self.config.lock().unwrap() = config;
        Ok(Self::report())
    }

    async fn toggle_exchange(
        &self,
        exchange: ExchangeId,
        enabled: Option<bool>,
    ) -> Result<ExchangeConfig, ControlError> {
        self.record(format!("toggle_exchange {exchange} {enabled:?}"))?;
        let mut config = self.config.lock().unwrap();
        let entry = config.exchanges.get_mut(&exchange).ok_or_else(|| {
            ControlError::invalid("unknown_exchange", format!("{exchange} is not configured"))
        })?;
        entry.enabled = enabled.unwrap_or(!entry.enabled);
        Ok(entry.clone())
    }

    async fn set_symbols(
        &self,
        exchange: ExchangeId,
        symbols: Vec<Symbol>,
    ) -> Result<ExchangeConfig, ControlError> {
        self.record(format!("set_symbols {exchange} {symbols:?}"))?;
        let mut config = self.config.lock().unwrap();
        let entry = config.exchanges.get_mut(&exchange).ok_or_else(|| {
            ControlError::invalid("unknown_exchange", format!("{exchange} is not configured"))
        })?;
        entry.symbols = symbols;
        Ok(entry.clone())
    }

    async fn restart(&self) -> Result<ApplyReport, ControlError> {
        self.record("restart".into())?;
        Ok(Self::report())
    }

    async fn delete_database(&self) -> Result<(), ControlError> {
        self.record("delete_database".into())
    }

    async fn status(&self) -> Result<StatusReport, ControlError> {
        self.record("status".into())?;
        Ok(StatusReport {
            uptime_s: 42,
            threads: Some(12),
            abandoned_threads: 0,
            children: vec![ChildStatus {
                name: "storage".into(),
                state: "running".into(),
                restarts: 0,
                last_error: None,
                started_at: Some(1_704_277_020_000),
                last_heartbeat: None,
                abandoned_threads: 0,
                metrics: None,
            }],
        })
    }

    /// Read from the running config itself, which is what the real
    /// supervisor's cell follows. Not recorded (the gateway asks before
    /// every mutating request), but it fails like every other call.
    async fn api_token(&self) -> Result<Option<ApiToken>, ControlError> {
        if let Some(error) = self.failure.lock().unwrap().clone() {
            return Err(error);
        }
        Ok(self.config.lock().unwrap().api_token.clone())
    }

    async fn exchange_symbols(&self, exchange: ExchangeId) -> Result<Vec<Symbol>, ControlError> {
        self.record(format!("exchange_symbols {exchange}"))?;
        Ok(vec![
            Symbol::new("BTCUSDT").unwrap(),
            Symbol::new("ETHUSDT").unwrap(),
        ])
    }
}

/// Records what an actor receives, for assertions.
pub(crate) struct Recorder<M> {
    pub seen: Arc<Mutex<Vec<M>>>,
}

impl<M: 'static + Unpin> Actor for Recorder<M> {
    type Context = Context<Self>;
}

impl Handler<ChildExited> for Recorder<ChildExited> {
    type Result = ();
    fn handle(&mut self, msg: ChildExited, _: &mut Self::Context) {
        self.seen.lock().unwrap().push(msg);
    }
}

impl Handler<Heartbeat> for Recorder<Heartbeat> {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) {
        self.seen.lock().unwrap().push(msg);
    }
}

/// Starts a recorder; returns its address and what it saw.
pub(crate) fn recorder<M>() -> (Addr<Recorder<M>>, Arc<Mutex<Vec<M>>>)
where
    M: Message + Send + Unpin + 'static,
    M::Result: Send,
    Recorder<M>: Handler<M> + Actor<Context = Context<Recorder<M>>>,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    (Recorder { seen: seen.clone() }.start(), seen)
}

/// A gateway's dependencies over a mock supervisor and a real storage
/// thread whose batches are an hour apart, so submitted candles stay
/// queued unless flushed explicitly.
pub(crate) struct Harness {
    pub deps: GatewayDeps,
    pub control: Arc<MockControl>,
    pub exits: Arc<Mutex<Vec<ChildExited>>>,
    pub exit_sink: Recipient<ChildExited>,
    _channels: StorageChannels,
    _dir: TempDir,
}

/// Builds a [`Harness`]; must run inside an actix system.
pub(crate) fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("gateway.db")).unwrap();
    let channels = StorageChannels::new(RescueFile::for_database(db.path()));
    let (exit_recorder, exits) = recorder::<ChildExited>();
    let exit_sink = exit_recorder.recipient();
    spawn_storage(
        db,
        &channels,
        StorageSettings {
            batch_interval: Duration::from_secs(3600),
            max_records: 10_000,
            max_queued: crate::storage::MAX_QUEUED_CANDLES,
        },
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Storage, 1, exit_sink.clone()),
        Arc::default(),
    )
    .unwrap();
    let control = Arc::new(MockControl::new());
    Harness {
        deps: GatewayDeps {
            control: control.clone(),
            storage: channels.handle(),
            broadcaster: Broadcaster::new(),
            logs: LogHistory::default(),
            settings: Arc::new(GatewaySettings::default()),
        },
        control,
        exits,
        exit_sink,
        _channels: channels,
        _dir: dir,
    }
}

/// A closed 1m candle of simulated/`symbol` at minute `minute` of 2024-01-03.
pub(crate) fn candle(symbol: &str, minute: i64) -> Candle {
    let price = 100.0 + minute as f64;
    Candle {
        key: SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).unwrap(),
            Interval::M1,
        ),
        open_time: BASE_TIME + minute * 60_000,
        open: price,
        high: price + 2.0,
        low: price - 1.0,
        close: price + 1.0,
        volume: 10.0 + minute as f64,
        closed: true,
    }
}

/// 2024-01-03T10:17:00Z, minute-aligned.
pub(crate) const BASE_TIME: i64 = 1_704_277_020_000;

/// Longest any condition is waited for: generous for a loaded 2-core CI
/// machine, short enough that a hung test fails in reasonable time.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Polls `check` until it gives a value, failing the test after [`WAIT`].
pub(crate) async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `future`, failing the test after [`WAIT`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the storage thread has taken `n` candles into its queue
/// (a submitted candle may still sit in the channel for a moment).
pub(crate) async fn queued(deps: &GatewayDeps, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = deps.storage.stats().await.unwrap();
        if stats.queued >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "storage queued {} of {n}",
            stats.queued
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
