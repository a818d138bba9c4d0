//! The storage thread against a real SQLite file: bounded memory through
//! an outage, and the rescue file written back when the database recovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_storage::rescue::{path_for, RescueFile};
use ohlcv_storage::{CandleQuery, Database};

use super::{spawn_storage, CandleSink, StorageChannels, StorageSettings};
use crate::lifecycle::{ChildExited, ChildId, HeartbeatSink, LifeGuard};

/// Ignores child exits: these tests stop the thread themselves.
struct NoSupervisor;

impl Actor for NoSupervisor {
    type Context = Context<Self>;
}

impl Handler<ChildExited> for NoSupervisor {
    type Result = ();
    fn handle(&mut self, _: ChildExited, _: &mut Self::Context) {}
}

fn candle(minute: i64, closed: bool) -> Candle {
    Candle {
        key: SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        ),
        open_time: 1_704_067_200_000 + minute * 60_000,
        open: 1.0,
        high: 2.0,
        low: 0.5,
        close: 1.5,
        volume: 3.0,
        closed,
    }
}

fn stored(path: &std::path::Path) -> usize {
    let db = Database::open(path).unwrap();
    let all = CandleQuery {
        from: None,
        to: None,
        limit: usize::MAX,
    };
    db.get_candles(&candle(0, true).key, &all).unwrap().len()
}

#[actix_rt::test]
async fn a_long_outage_spills_to_the_rescue_file_and_recovery_writes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let db = Database::open(&path).unwrap();
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    let supervisor = NoSupervisor.start().recipient();
    spawn_storage(
        db,
        &channels,
        StorageSettings {
            batch_interval: Duration::from_millis(50),
            max_records: 1_000_000,
            max_queued: 100,
        },
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Storage, 1, supervisor),
        Arc::default(),
    )
    .unwrap();
    let storage = channels.handle();

    // Another process holds the write lock: every write fails.
    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let total = 1_000;
    for minute in 0..total {
        // The last candle is still open: it must stay in memory.
        storage
            .try_submit(candle(minute, minute + 1 < total))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = storage.stats().await.unwrap();
        if stats.failed_flushes > 0 && stats.spilled > 0 {
            break stats;
        }
        assert!(Instant::now() < deadline, "no spill: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stats.queued < 100, "queue bounded: {stats:?}");
    assert!(path_for(&path).exists());

    // The database comes back: the rescue file goes in, then the queue.
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    storage.flush().await.unwrap();
    let stats = storage.stats().await.unwrap();
    assert_eq!(stats.replayed, stats.spilled, "{stats:?}");
    assert!(!path_for(&path).exists(), "the rescue file is retired");
    assert_eq!(stored(&path), total as usize);
}

#[actix_rt::test]
async fn a_sink_whose_storage_is_stuck_spills_closed_candles_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    // No storage thread at all: the channel fills and stays full.
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    let mut sink = CandleSink::new(channels.handle()).with_overflow_limit(50);
    let sent = super::CANDLE_CHANNEL_CAPACITY as i64 + 500;
    for minute in 0..sent {
        sink.submit(candle(minute, true));
    }
    assert!(sink.pending() < 50, "{} kept", sink.pending());
    assert!(sink.spilled() > 0);
    // Nothing lost: channel + sink + rescue file hold every candle.
    let mut db = Database::open(&path).unwrap();
    let rescued = RescueFile::for_database(&path)
        .replay_into(&mut db)
        .unwrap();
    assert_eq!(
        rescued.candles as i64 + sink.pending() as i64 + super::CANDLE_CHANNEL_CAPACITY as i64,
        sent
    );
}
