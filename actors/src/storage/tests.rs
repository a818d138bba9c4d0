//! The storage thread against a real SQLite file: bounded memory through
//! an outage, and the rescue file written back when the database recovers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_storage::rescue::{path_for, RescueFile};
use ohlcv_storage::{CandleQuery, Database};

use super::{
    spawn_storage, CandleSink, StorageChannels, StorageSettings, CANDLE_CHANNEL_CAPACITY,
    MAX_SINK_BATCH,
};
use crate::lifecycle::{ChildExited, ChildId, HeartbeatSink, LifeGuard};

/// Ignores child exits: these tests stop the threads themselves.
pub(crate) struct NoSupervisor;

impl Actor for NoSupervisor {
    type Context = Context<Self>;
}

impl Handler<ChildExited> for NoSupervisor {
    type Result = ();
    fn handle(&mut self, _: ChildExited, _: &mut Self::Context) {}
}

/// Starts a storage thread (and the first time its readers) on `channels`
/// over the database at `path`, under a supervisor that ignores exits.
pub(crate) fn spawn_on(channels: &StorageChannels, path: &Path, settings: StorageSettings) {
    let supervisor = NoSupervisor.start().recipient();
    spawn_storage(
        Database::open(path).unwrap(),
        channels,
        settings,
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Storage, 1, supervisor),
        Arc::default(),
    )
    .unwrap();
}

/// Fresh channels over the database at `path` with a storage thread on
/// them ([`spawn_on`]).
pub(crate) fn start_storage(path: &Path, settings: StorageSettings) -> StorageChannels {
    let channels = StorageChannels::new(RescueFile::for_database(path));
    spawn_on(&channels, path, settings);
    channels
}

/// Settings whose batches are an hour apart: only requests write.
pub(crate) const HOURLY: StorageSettings = StorageSettings {
    batch_interval: Duration::from_secs(3600),
    max_records: 1_000_000,
    max_queued: 100_000,
};

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
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    spawn_on(
        &channels,
        &path,
        StorageSettings {
            batch_interval: Duration::from_millis(50),
            max_records: 1_000_000,
            max_queued: 100,
        },
    );
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
    // More than the channel can hold even in full batches, in messages of
    // 100 updates.
    let sent = (CANDLE_CHANNEL_CAPACITY * MAX_SINK_BATCH) as i64 + 500;
    for minute in 0..sent {
        sink.submit(candle(minute, true));
        if minute % 100 == 99 {
            sink.flush();
        }
    }
    sink.flush();
    assert_eq!(channels.handle().candles.len(), CANDLE_CHANNEL_CAPACITY);
    assert!(sink.pending() < 50, "{} kept", sink.pending());
    assert!(sink.spilled() > 0);
    // Nothing lost: channel + sink + rescue file hold every candle.
    let in_channel = match channels.rescue_everything() {
        super::FlushOutcome::Rescued { candles } => candles as i64,
        other => panic!("{other:?}"),
    };
    // The channel's bound is in batches: here, messages of 100 updates.
    assert_eq!(in_channel, (CANDLE_CHANNEL_CAPACITY * 100) as i64);
    let mut db = Database::open(&path).unwrap();
    let rescued = RescueFile::for_database(&path)
        .replay_into(&mut db)
        .unwrap();
    assert_eq!(rescued.candles as i64 + sink.pending() as i64, sent);
}

#[actix_rt::test]
async fn a_sink_sends_one_batch_per_flush_and_nothing_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    let handle = channels.handle();
    let mut sink = CandleSink::new(channels.handle());
    for m in 0..5 {
        sink.submit(candle(m, true));
    }
    assert_eq!(handle.candles.len(), 0, "held until the message ends");
    sink.flush();
    assert_eq!(handle.candles.len(), 1, "one send for the whole batch");
    sink.flush();
    assert_eq!(handle.candles.len(), 1, "an empty batch is not sent");
    // A batch that reaches the bound goes at once.
    for m in 0..=MAX_SINK_BATCH as i64 {
        sink.submit(candle(m, true));
    }
    assert_eq!(handle.candles.len(), 2);
    sink.flush();
    assert_eq!(handle.candles.len(), 3);
    assert_eq!(sink.pending(), 0);
    assert_eq!(sink.overflowed(), 0);
    match channels.rescue_everything() {
        super::FlushOutcome::Rescued { candles } => assert_eq!(candles, MAX_SINK_BATCH + 1),
        other => panic!("{other:?}"),
    }
}

/// A candle of minute `minute` whose close is `close`: one update of it.
fn update(minute: i64, close: f64) -> Candle {
    Candle {
        close,
        high: 2.0_f64.max(close),
        closed: false,
        ..candle(minute, false)
    }
}

#[actix_rt::test]
async fn batched_updates_arrive_in_order_even_through_a_full_channel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    let storage = channels.handle();
    let mut sink = CandleSink::new(channels.handle());

    // Updates of one candle inside one batch: the last one wins.
    sink.submit(update(0, 1.0));
    sink.submit(update(1, 1.0));
    sink.submit(update(0, 1.25));
    sink.flush();
    // The channel fills up (no thread yet): the next batches wait in the
    // sink, and a newer update of minute 0 replaces the kept one.
    while storage.try_submit(update(5, 1.0)).is_ok() {}
    sink.submit(update(0, 1.5));
    sink.submit(update(2, 1.0));
    sink.flush();
    assert_eq!(sink.pending(), 2);
    sink.submit(update(0, 1.75));
    sink.flush();
    assert_eq!(sink.pending(), 2, "latest wins while waiting");
    sink.retry();
    assert_eq!(sink.pending(), 2, "still full");

    // The storage thread starts and drains the channel; the kept updates
    // go first, then the newest batch.
    spawn_on(&channels, &path, HOURLY);
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.candles.is_full() {
        assert!(Instant::now() < deadline, "the channel was never drained");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    sink.submit(update(0, 2.0));
    sink.submit(update(3, 1.0));
    sink.flush();
    assert_eq!(sink.pending(), 0, "the kept updates went first");
    assert!(sink.overflowed() >= 3);
    storage.flush().await.unwrap();
    let all = CandleQuery {
        from: None,
        to: None,
        limit: usize::MAX,
    };
    let got = storage.candles(candle(0, true).key, all).await.unwrap();
    let closes: Vec<(i64, f64)> = got
        .iter()
        .map(|c| ((c.open_time - candle(0, true).open_time) / 60_000, c.close))
        .collect();
    assert_eq!(
        closes,
        vec![(0, 2.0), (1, 1.0), (2, 1.0), (3, 1.0), (5, 1.0)]
    );
}

#[actix_rt::test]
async fn a_stopping_sink_hands_over_its_current_batch_and_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = StorageChannels::new(RescueFile::for_database(&path));
    let storage = channels.handle();
    let mut sink = CandleSink::new(channels.handle());
    while storage.try_submit(update(100, 1.0)).is_ok() {}
    sink.submit(update(0, 1.0));
    sink.flush();
    assert_eq!(sink.pending(), 1);
    // Not flushed: a message in progress when the datasource stops.
    sink.submit(update(0, 1.5));
    sink.submit(update(1, 1.0));
    // The channel stays full: both candles go to the rescue file, with the
    // newer update of minute 0.
    assert_eq!(sink.drain_blocking(Duration::from_millis(50)), 0);
    assert_eq!(sink.pending(), 0);
    let mut db = Database::open(&path).unwrap();
    let rescued = RescueFile::for_database(&path)
        .replay_into(&mut db)
        .unwrap();
    assert_eq!(rescued.candles, 2);
    let all = CandleQuery {
        from: None,
        to: None,
        limit: usize::MAX,
    };
    let got = db.get_candles(&candle(0, true).key, &all).unwrap();
    assert_eq!(got[0].close, 1.5);
    assert_eq!(got.len(), 2);
}

#[actix_rt::test]
async fn holes_and_completeness_count_queued_candles_as_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = start_storage(&path, HOURLY);
    let storage = channels.handle();
    let key = candle(0, true).key;
    let minute = |m: i64| candle(m, true).open_time;

    // Minutes 0 and 9 stored, 1..=8 missing in the database.
    for m in [0, 9] {
        storage.try_submit(candle(m, true)).unwrap();
    }
    storage.flush().await.unwrap();
    // 2, 3 and the open 10 only queued: holes must not report 2 and 3.
    for m in [2, 3] {
        storage.try_submit(candle(m, true)).unwrap();
    }
    storage.try_submit(candle(10, false)).unwrap();
    let holes = storage.holes(key.clone(), 10).await.unwrap();
    let got: Vec<(i64, i64)> = holes.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(got, vec![(minute(1), minute(1)), (minute(4), minute(8))]);
    let stats = storage.stats().await.unwrap();
    assert_eq!(stats.queued, 3, "the queue is not written early: {stats:?}");

    // The exchange has nothing from 5 to 7: recorded once, never asked again.
    for _ in 0..2 {
        storage
            .record_exchange_hole(key.clone(), minute(5), minute(7))
            .await
            .unwrap();
    }
    let holes = storage.holes(key.clone(), 10).await.unwrap();
    let got: Vec<(i64, i64)> = holes.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        got,
        vec![
            (minute(1), minute(1)),
            (minute(4), minute(4)),
            (minute(8), minute(8))
        ]
    );
    let error = storage
        .record_exchange_hole(key.clone(), minute(7), minute(5))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("from is after to"), "{error}");

    // Minute 1 arrives (queued) and 11 opens: completeness counts them.
    storage.try_submit(candle(1, true)).unwrap();
    storage.try_submit(candle(10, true)).unwrap();
    storage.try_submit(candle(11, false)).unwrap();
    let all = storage.completeness().await.unwrap();
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert_eq!(c.key, key);
    assert_eq!(
        (c.first_open_time, c.last_open_time),
        (minute(0), minute(11))
    );
    assert_eq!((c.expected, c.stored, c.missing), (12, 7, 2));
    assert_eq!((c.exchange_holes, c.exchange_hole_candles), (1, 3));
    assert_eq!(c.newest_closed_open_time, Some(minute(10)));
    let age = c.newest_closed_age_ms.unwrap();
    assert!(age > 0, "2024 is in the past: {age}");
    assert_eq!(storage.stats().await.unwrap().queued, 0);
}

#[actix_rt::test]
async fn reads_are_answered_while_the_storage_thread_is_busy_and_see_every_update_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = start_storage(&path, HOURLY);
    let storage = channels.handle();
    let key = candle(0, true).key;
    for m in 0..5 {
        storage.try_submit(candle(m, true)).unwrap();
    }
    storage.flush().await.unwrap();

    // The storage thread is stuck (as in a write that takes long) far
    // longer than the test waits; updates sent now stay in the channel.
    storage.freeze(Duration::from_secs(600));
    storage.try_submit(candle(5, true)).unwrap();
    let mut newer = candle(4, true);
    newer.close = 9.0;
    storage.try_submit(newer).unwrap();

    let latest = CandleQuery {
        from: None,
        to: None,
        limit: 3,
    };
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        storage.candles(key.clone(), latest),
    )
    .await
    .expect("the read does not wait for the storage thread")
    .unwrap();
    let got: Vec<(i64, f64)> = read.iter().map(|c| (c.open_time, c.close)).collect();
    let minute = |m: i64| candle(m, true).open_time;
    assert_eq!(
        got,
        vec![(minute(3), 1.5), (minute(4), 9.0), (minute(5), 1.5)],
        "stored rows merged with the updates still in the channel"
    );

    let series = tokio::time::timeout(Duration::from_secs(30), storage.series())
        .await
        .expect("/databaseSymbols does not wait either")
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!((series[0].count, series[0].last), (6, minute(5)));
    let last = storage.last_open_time(key.clone()).await.unwrap();
    assert_eq!(last, Some(minute(5)));
    let holes = storage.holes(key, 10).await.unwrap();
    assert!(holes.is_empty(), "{holes:?}");
}

#[actix_rt::test]
async fn the_checkpoint_thread_copies_written_batches_into_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ohlcv.db");
    let channels = start_storage(&path, HOURLY);
    let storage = channels.handle();
    let main_file = || std::fs::metadata(&path).unwrap().len();
    let empty = main_file();
    // Far below the writer's own automatic checkpoint: without the
    // checkpoint thread these pages would stay in the WAL.
    storage
        .try_submit_batch((0..5_000).map(|minute| candle(minute, true)).collect())
        .unwrap();
    storage.flush().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while storage.stats().await.unwrap().checkpoints == 0 {
        assert!(Instant::now() < deadline, "no checkpoint within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(main_file() > empty, "the main file holds the batch");
}
