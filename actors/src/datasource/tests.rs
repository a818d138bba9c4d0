//! The datasource against a scripted exchange and a real storage thread:
//! history syncs side by side as the adapter allows, then streams.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_exchanges::{CandleStream, ExchangeError, MarketSource};

use super::{Datasource, DatasourceDeps, DatasourceSettings};
use crate::gateway::broadcast::Broadcaster;
use crate::lifecycle::{ChildId, Heartbeat, HeartbeatSink, LifeGuard};
use crate::metrics::WorkerMetrics;
use crate::storage::tests::{start_storage, NoSupervisor, HOURLY};

/// Records the datasource's state from each heartbeat.
struct States(Arc<Mutex<Vec<String>>>);

impl Actor for States {
    type Context = Context<Self>;
}

impl Handler<Heartbeat> for States {
    type Result = ();
    fn handle(&mut self, beat: Heartbeat, _: &mut Self::Context) {
        if let WorkerMetrics::Datasource(metrics) = beat.metrics {
            self.0.lock().unwrap().push(metrics.state);
        }
    }
}

/// An exchange whose history requests take a while and are counted: how
/// many were in flight at once, at most.
struct SlowHistory {
    concurrency: usize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    requests: AtomicUsize,
}

#[async_trait]
impl MarketSource for SlowHistory {
    fn id(&self) -> ExchangeId {
        ExchangeId::Simulated
    }

    fn max_silence(&self) -> Duration {
        Duration::from_secs(600)
    }

    fn history_concurrency(&self) -> usize {
        self.concurrency
    }

    async fn load_symbols(&self) -> Result<Vec<Symbol>, ExchangeError> {
        Ok(Vec::new())
    }

    async fn backfill(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let key = SeriesKey::new(ExchangeId::Simulated, symbol.clone(), interval);
        let step = interval.duration_ms();
        let newest = interval.align(ohlcv_domain::time::now_ms());
        Ok((interval.align(from)..=to.min(newest))
            .step_by(step as usize)
            .map(|open_time| Candle {
                key: key.clone(),
                open_time,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
                closed: open_time < newest,
            })
            .collect())
    }

    async fn stream(&self, _: &[SeriesKey]) -> Result<CandleStream, ExchangeError> {
        Ok(Box::pin(futures_util::stream::pending()))
    }
}

#[actix_rt::test]
async fn history_syncs_as_many_series_at_once_as_the_adapter_allows_then_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = start_storage(&path, HOURLY);
    let supervisor = NoSupervisor.start().recipient();
    let source = Arc::new(SlowHistory {
        concurrency: 3,
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
    });
    let states = Arc::new(Mutex::new(Vec::new()));
    let heartbeats = HeartbeatSink::default();
    heartbeats.set(States(states.clone()).start().recipient());
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"].map(|s| Symbol::new(s).unwrap());
    let intervals = vec![Interval::M1, Interval::M5, Interval::M15];
    let series = symbols.len() * intervals.len();
    let load = 40;
    let _datasource = Datasource::new(
        DatasourceDeps {
            source: source.clone(),
            storage: channels.handle(),
            broadcaster: Broadcaster::new(),
            heartbeats,
            retired: Arc::new(AtomicBool::new(false)),
        },
        DatasourceSettings {
            symbols: symbols.to_vec(),
            intervals,
            bootstrap_load: load,
        },
        LifeGuard::new(ChildId::Datasource(ExchangeId::Simulated), 1, supervisor),
    )
    .start();

    let storage = channels.handle();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        storage.flush().await.unwrap();
        let stored: u64 = storage
            .series()
            .await
            .unwrap()
            .iter()
            .map(|s| s.count)
            .sum();
        let streaming = states.lock().unwrap().iter().any(|s| s == "streaming");
        if stored >= (series as u64) * load && streaming {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} candles stored, states {:?}",
            states.lock().unwrap()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let summaries = storage.series().await.unwrap();
    assert_eq!(summaries.len(), series);
    for summary in &summaries {
        assert!(summary.count >= load, "{summary:?}");
    }
    // One request per series (40 candles are one chunk), three at a time.
    assert!(source.requests.load(Ordering::SeqCst) >= series);
    assert_eq!(source.most_in_flight.load(Ordering::SeqCst), 3);
    // Streaming was reached once, after every chain finished: no state
    // after it goes back to syncing.
    let states = states.lock().unwrap();
    let first = states.iter().position(|s| s == "streaming").unwrap();
    assert!(
        states[first..].iter().all(|s| s == "streaming"),
        "{states:?}"
    );
}
