//! Benchmarks of the storage hot paths: the periodic batch upsert, the
//! `/ohlcv` read, and the queue every candle update goes through.
//!
//! Run with `cargo bench -p ohlcv-storage`; add `-- --quick` for a fast look.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_storage::{CandleQuery, CandleQueue, Database};

const MINUTE: i64 = 60_000;
/// One batch: 100 series of 100 candles, about what a minute of updates from
/// a busy configuration coalesces into.
const SERIES: usize = 100;
const BATCH: usize = 10_000;

fn keys() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|i| {
            let symbol = Symbol::new(&format!("SYM{i:03}USDT")).expect("valid symbol");
            SeriesKey::new(ExchangeId::Simulated, symbol, Interval::M1)
        })
        .collect()
}

/// `BATCH` candles spread evenly over `keys`, starting at minute `start`.
fn batch(keys: &[SeriesKey], start: i64) -> Vec<Candle> {
    let per_series = BATCH / keys.len();
    keys.iter()
        .flat_map(|key| {
            (0..per_series).map(move |i| Candle {
                key: key.clone(),
                open_time: (start + i as i64) * MINUTE,
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.5,
                volume: 12.0,
                closed: true,
            })
        })
        .collect()
}

fn insert_batch(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("bench.db")).expect("open");
    let keys = keys();
    let mut group = c.benchmark_group("insert_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    // Each iteration writes new open times, so every upsert is an insert
    // into a growing table, as in production.
    let mut next_start = 0i64;
    group.bench_function("10k_candles_100_series_new_rows", |b| {
        b.iter_batched(
            || {
                let candles = batch(&keys, next_start);
                next_start += (BATCH / SERIES) as i64;
                candles
            },
            |candles| black_box(db.insert_batch(&candles).expect("insert")),
            BatchSize::LargeInput,
        )
    });
    // The same candles again: every upsert is an update (open candles being
    // rewritten).
    let same = batch(&keys, 0);
    group.bench_function("10k_candles_100_series_updates", |b| {
        b.iter(|| black_box(db.insert_batch(&same).expect("insert")))
    });
    group.finish();
}

fn get_candles(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("bench.db")).expect("open");
    let keys = keys();
    for start in (0..50).map(|i| i * (BATCH / SERIES) as i64) {
        db.insert_batch(&batch(&keys, start)).expect("fill");
    }
    let key = keys[SERIES / 2].clone();
    let mut group = c.benchmark_group("get_candles");
    group.throughput(Throughput::Elements(1_000));
    let latest = CandleQuery {
        from: None,
        to: None,
        limit: 1_000,
    };
    group.bench_function("latest_1000_of_5000", |b| {
        b.iter(|| black_box(db.get_candles(&key, &latest).expect("read")))
    });
    let from = CandleQuery {
        from: Some(1_000 * MINUTE),
        to: None,
        limit: 1_000,
    };
    group.bench_function("first_1000_from_of_5000", |b| {
        b.iter(|| black_box(db.get_candles(&key, &from).expect("read")))
    });
    group.finish();
}

fn queue_push(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("candle_queue");
    group.throughput(Throughput::Elements(BATCH as u64));
    // Ten updates of each of 1,000 open candles: the coalescing case.
    let updates: Vec<Candle> = (0..10)
        .flat_map(|_| batch(&keys[..10], 0).into_iter().take(1_000))
        .collect();
    group.bench_function("push_10k_new_candles_100_series", |b| {
        b.iter_batched(
            || batch(&keys, 0),
            |candles| {
                let mut queue = CandleQueue::new();
                for candle in candles {
                    queue.push(candle);
                }
                black_box(queue.len())
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("push_10k_updates_of_1k_candles", |b| {
        b.iter_batched(
            || updates.clone(),
            |candles| {
                let mut queue = CandleQueue::new();
                for candle in candles {
                    queue.push(candle);
                }
                black_box(queue.len())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Series of the large-table benchmark, and candles each holds at first.
const LARGE_SERIES: usize = 1_000;
const LARGE_PER_SERIES: usize = 1_000;
/// One batch into the large table: a minute of a busy collector's
/// updates, 60 new candles of each series.
const LARGE_BATCH_PER_SERIES: usize = 60;

fn large_keys() -> Vec<SeriesKey> {
    (0..LARGE_SERIES)
        .map(|i| {
            let symbol = Symbol::new(&format!("S{i:04}USDT")).expect("valid symbol");
            SeriesKey::new(ExchangeId::Simulated, symbol, Interval::M1)
        })
        .collect()
}

fn candle(key: &SeriesKey, minute: i64) -> Candle {
    Candle {
        key: key.clone(),
        open_time: minute * MINUTE,
        open: 100.0,
        high: 101.0,
        low: 99.0,
        close: 100.5,
        volume: 12.0,
        closed: true,
    }
}

/// `per_series` new candles of every series from minute `start`, series
/// after series (the queue's order) or minute after minute (interleaved,
/// as updates arrive).
fn large_batch(
    keys: &[SeriesKey],
    start: i64,
    per_series: usize,
    interleaved: bool,
) -> Vec<Candle> {
    let minutes = start..start + per_series as i64;
    if interleaved {
        minutes
            .flat_map(|minute| keys.iter().map(move |key| candle(key, minute)))
            .collect()
    } else {
        keys.iter()
            .flat_map(|key| minutes.clone().map(move |minute| candle(key, minute)))
            .collect()
    }
}

/// 60,000 new candles over 1,000 series into a table of 1,000,000 rows
/// (issue 8's batch-write figure), in the queue's order and interleaved.
fn insert_into_large_table(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Database::open(&dir.path().join("large.db")).expect("open");
    let keys = large_keys();
    for start in (0..LARGE_PER_SERIES as i64).step_by(50) {
        db.insert_batch(&large_batch(&keys, start, 50, false))
            .expect("fill");
    }
    let mut group = c.benchmark_group("insert_into_1m_rows");
    group.throughput(Throughput::Elements(
        (LARGE_SERIES * LARGE_BATCH_PER_SERIES) as u64,
    ));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut next_start = LARGE_PER_SERIES as i64;
    for (name, interleaved) in [
        ("60k_new_queue_order", false),
        ("60k_new_interleaved", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let candles =
                        large_batch(&keys, next_start, LARGE_BATCH_PER_SERIES, interleaved);
                    next_start += LARGE_BATCH_PER_SERIES as i64;
                    candles
                },
                |candles| black_box(db.insert_batch(&candles).expect("insert")),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    insert_batch,
    get_candles,
    queue_push,
    insert_into_large_table
);
criterion_main!(benches);
