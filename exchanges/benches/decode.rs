//! Decode throughput of each exchange adapter: one live frame into a
//! `Candle` (what `LiveProtocol::decode` calls for every text frame) and
//! one full REST page of candles.
//!
//! The live frames are the documented payloads of `src/*/test_data/`; the
//! REST bodies are generated in the documented shape, at the page size the
//! backfill asks for. Throughput is in frames (live) or rows (REST) per
//! second.
//!
//! Quick run: `cargo bench -p ohlcv-exchanges --bench decode --
//! --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_exchanges::{binance_futures, bybit_futures, okx_futures};

const BINANCE_KLINE_EVENT: &str = include_str!("../src/binance_futures/test_data/kline_event.json");
const BYBIT_WS_KLINE: &str = include_str!("../src/bybit_futures/test_data/ws_kline.json");
const OKX_WS_CANDLE_PUSH: &str = include_str!("../src/okx_futures/test_data/ws_candle_push.json");

/// Start of the generated REST pages: 2023-01-01T00:00:00Z, aligned to 1m.
const START_MS: i64 = 1_672_531_200_000;
const MINUTE_MS: i64 = 60_000;

fn key(exchange: ExchangeId) -> SeriesKey {
    SeriesKey::new(exchange, Symbol::new("BTCUSDT").unwrap(), Interval::M1)
}

/// Plausible prices of row `i`: open, high, low, close, volume, as decimal
/// strings with the exchanges' usual precision.
fn prices(i: i64) -> [String; 5] {
    let base = 16_500.0 + (i % 97) as f64 * 0.7;
    let (open, close) = (base, base + ((i % 13) as f64 - 6.0) * 0.3);
    let high = open.max(close) + 2.5;
    let low = open.min(close) - 1.9;
    let volume = 10.0 + (i % 31) as f64 * 0.137;
    [
        format!("{open:.1}"),
        format!("{high:.1}"),
        format!("{low:.1}"),
        format!("{close:.1}"),
        format!("{volume:.3}"),
    ]
}

/// The Binance live frame: the documented kline event wrapped as a
/// combined-stream frame.
fn binance_frame() -> String {
    format!(r#"{{"stream":"btcusdt@kline_1m","data":{BINANCE_KLINE_EVENT}}}"#)
}

/// The OKX live frame: the documented push on a swap and a channel we
/// collect (the documented one is `candle1D` of the spot `BTC-USDT`).
fn okx_frame() -> String {
    let frame = OKX_WS_CANDLE_PUSH
        .replace("\"candle1D\"", "\"candle1m\"")
        .replace("\"BTC-USDT\"", "\"BTC-USDT-SWAP\"");
    assert_ne!(frame, OKX_WS_CANDLE_PUSH, "the OKX fixture changed shape");
    frame
}

/// `GET /fapi/v1/klines` body of `rows` twelve-element rows, oldest first.
fn binance_klines_body(rows: i64) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|i| {
            let t = START_MS + i * MINUTE_MS;
            let [o, h, l, c, v] = prices(i);
            format!(
                r#"[{t},"{o}","{h}","{l}","{c}","{v}",{},"{}",{},"{}","{}","0"]"#,
                t + MINUTE_MS - 1,
                "165000.1234",
                100 + i % 50,
                "4.5",
                "74250.5",
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

/// `GET /v5/market/kline` body of `rows` seven-string rows, newest first.
fn bybit_klines_body(rows: i64) -> String {
    let list: Vec<String> = (0..rows)
        .rev()
        .map(|i| {
            let t = START_MS + i * MINUTE_MS;
            let [o, h, l, c, v] = prices(i);
            format!(r#"["{t}","{o}","{h}","{l}","{c}","{v}","165000.1234"]"#)
        })
        .collect();
    format!(
        r#"{{"retCode":0,"retMsg":"OK","result":{{"symbol":"BTCUSDT","category":"linear","list":[{}]}},"retExtInfo":{{}},"time":{}}}"#,
        list.join(","),
        START_MS + rows * MINUTE_MS
    )
}

/// `GET /api/v5/market/candles` body of `rows` nine-string rows, newest
/// first.
fn okx_candles_body(rows: i64) -> String {
    let data: Vec<String> = (0..rows)
        .rev()
        .map(|i| {
            let t = START_MS + i * MINUTE_MS;
            let [o, h, l, c, v] = prices(i);
            let confirm = u8::from(i + 1 < rows);
            format!(r#"["{t}","{o}","{h}","{l}","{c}","{v}","{v}","165000.1234","{confirm}"]"#)
        })
        .collect();
    format!(r#"{{"code":"0","msg":"","data":[{}]}}"#, data.join(","))
}

fn live(c: &mut Criterion) {
    let mut group = c.benchmark_group("live_frame");
    group.throughput(Throughput::Elements(1));

    let binance = binance_frame();
    assert!(matches!(
        binance_futures::ws::decode_frame(&binance),
        Ok(binance_futures::ws::Frame::Candle(_))
    ));
    group.bench_function("binance_futures", |b| {
        b.iter(|| binance_futures::ws::decode_frame(black_box(&binance)))
    });

    assert!(matches!(
        bybit_futures::ws::decode_frame(BYBIT_WS_KLINE),
        Ok(bybit_futures::ws::WsEvent::Candles(ref c)) if c.len() == 1
    ));
    group.bench_function("bybit_futures", |b| {
        b.iter(|| bybit_futures::ws::decode_frame(black_box(BYBIT_WS_KLINE)))
    });

    let okx = okx_frame();
    assert!(matches!(
        okx_futures::ws::decode_text(&okx),
        Ok(okx_futures::ws::WsMessage::Candles(ref c)) if c.len() == 1
    ));
    group.bench_function("okx_futures", |b| {
        b.iter(|| okx_futures::ws::decode_text(black_box(&okx)))
    });

    group.finish();
}

fn rest(c: &mut Criterion) {
    let mut group = c.benchmark_group("rest_page");
    // Far in the future, so every row counts as closed.
    let now = i64::MAX / 2;

    let rows = i64::from(binance_futures::rest::MAX_KLINES_LIMIT);
    let body = binance_klines_body(rows);
    let binance = key(ExchangeId::BinanceFutures);
    assert_eq!(
        binance_futures::rest::decode_klines(&body, &binance, now)
            .unwrap()
            .len() as i64,
        rows
    );
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("binance_futures_1500", |b| {
        b.iter(|| binance_futures::rest::decode_klines(black_box(&body), &binance, now))
    });

    let rows = 1000;
    let body = bybit_klines_body(rows);
    let bybit = key(ExchangeId::BybitFutures);
    assert_eq!(
        bybit_futures::rest::decode_klines(&body, &bybit, now)
            .unwrap()
            .len() as i64,
        rows
    );
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("bybit_futures_1000", |b| {
        b.iter(|| bybit_futures::rest::decode_klines(black_box(&body), &bybit, now))
    });

    let rows = 100;
    let body = okx_candles_body(rows);
    let okx = key(ExchangeId::OkxFutures);
    assert_eq!(
        okx_futures::rest::decode_candles(&body, &okx)
            .unwrap()
            .len() as i64,
        rows
    );
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("okx_futures_100", |b| {
        b.iter(|| okx_futures::rest::decode_candles(black_box(&body), &okx))
    });

    group.finish();
}

criterion_group!(benches, live, rest);
criterion_main!(benches);
