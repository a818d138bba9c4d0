//! Benchmarks of the `/ohlcv` answer's encoding: 1000 candles (the default
//! `limit`) as JSON through serde_json over `Vec<OhlcvRow>`, as the route
//! did, against the direct writer it uses now; and gzip of that body at
//! level 1 (the gateway's) and 6 (flate2's default), with the compressed
//! sizes printed once, and at the 8 KiB threshold.
//!
//! Run with `cargo bench -p ohlcv-actors --bench ohlcv_encoding`; add
//! `-- --quick` for a fast look.

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::write::GzEncoder;
use flate2::Compression;
use ohlcv_actors::gateway::candles_json::write_rows;
use ohlcv_actors::gateway::http::{OhlcvRow, GZIP_MIN_BODY};
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

/// The default `/ohlcv` answer.
const CANDLES: usize = 1000;
const MINUTE: i64 = 60_000;
/// 2024-01-03T10:17:00Z.
const START: i64 = 1_704_277_020_000;

/// 1000 closed 1m candles of BTCUSDT around 43251.7, prices moving by
/// tenths of a dollar and volumes with three decimals, as an exchange
/// reports them; the last one still open.
fn candles() -> Vec<Candle> {
    let key = SeriesKey::new(
        ExchangeId::Simulated,
        Symbol::new("BTCUSDT").expect("valid symbol"),
        Interval::M1,
    );
    let mut rng = fastrand::Rng::with_seed(1000);
    let mut price = 43_251.7_f64;
    (0..CANDLES)
        .map(|i| {
            let tenths = |rng: &mut fastrand::Rng, range| f64::from(rng.i32(range)) / 10.0;
            let open = price;
            let close = ((open + tenths(&mut rng, -400..=400)) * 10.0).round() / 10.0;
            let high = ((open.max(close) + tenths(&mut rng, 0..=150)) * 10.0).round() / 10.0;
            let low = ((open.min(close) - tenths(&mut rng, 0..=150)) * 10.0).round() / 10.0;
            price = close;
            Candle {
                key: key.clone(),
                open_time: START + i as i64 * MINUTE,
                open,
                high,
                low,
                close,
                volume: f64::from(rng.u32(1_000..=250_000_000)) / 1000.0,
                closed: i + 1 < CANDLES,
            }
        })
        .collect()
}

/// `body` as gzip at `level`.
fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::new(level));
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn serialise(c: &mut Criterion) {
    let candles = candles();
    let mut group = c.benchmark_group("ohlcv_json_1000");
    group.throughput(Throughput::Elements(CANDLES as u64));
    group.bench_function("serde_json_via_rows", |b| {
        b.iter(|| {
            let rows: Vec<OhlcvRow> = black_box(&candles).iter().map(OhlcvRow::from).collect();
            serde_json::to_vec(&rows).expect("rows serialise")
        })
    });
    group.bench_function("direct_writer", |b| {
        b.iter(|| write_rows(black_box(&candles)))
    });
    group.finish();
}

fn compress(c: &mut Criterion) {
    let body = write_rows(&candles());
    let small = &body[..GZIP_MIN_BODY];
    eprintln!("ohlcv body of {CANDLES} candles: {} bytes", body.len());
    for level in [1, 6] {
        eprintln!(
            "  gzip level {level}: {} bytes; its first {GZIP_MIN_BODY} bytes: {} bytes",
            gzip(&body, level).len(),
            gzip(small, level).len()
        );
    }
    let mut group = c.benchmark_group("ohlcv_gzip_1000");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for level in [1, 6] {
        group.bench_function(format!("level_{level}"), |b| {
            b.iter(|| gzip(black_box(&body), level))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("ohlcv_gzip_threshold");
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("level_1_8KiB", |b| b.iter(|| gzip(black_box(small), 1)));
    group.finish();
}

criterion_group!(benches, serialise, compress);
criterion_main!(benches);
