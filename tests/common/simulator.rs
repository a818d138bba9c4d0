//! Checks stored candles against the simulated exchange's deterministic
//! series.

use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_exchanges::simulated::{candle_at, final_candle, STEPS_PER_CANDLE};
use serde_json::Value;

/// The key of a simulated series.
pub fn key(symbol: &str, interval: Interval) -> SeriesKey {
    SeriesKey::new(
        ExchangeId::Simulated,
        Symbol::new(symbol).unwrap(),
        interval,
    )
}

/// A candle from a row of `/ohlcv` or of the `ohlcv` view.
pub fn from_row(key: &SeriesKey, row: &Value) -> Candle {
    Candle {
        key: key.clone(),
        open_time: row["timestamp"].as_i64().expect("timestamp"),
        open: row["open"].as_f64().unwrap(),
        high: row["high"].as_f64().unwrap(),
        low: row["low"].as_f64().unwrap(),
        close: row["close"].as_f64().unwrap(),
        volume: row["volume"].as_f64().unwrap(),
        closed: row["closed"].as_bool().unwrap(),
    }
}

/// Which step of the simulator's candle `candle` is, if it is one.
pub fn step_of(seed: u64, candle: &Candle) -> Option<u32> {
    (0..=STEPS_PER_CANDLE)
        .find(|step| candle_at(seed, &candle.key, candle.open_time, *step) == *candle)
}

/// Asserts that `candles` (oldest first) are contiguous, that every closed
/// one is exactly the simulator's final candle, and that open ones (only
/// the newest two may be open: a close may still be on its way) are states
/// the simulator produced.
pub fn assert_exact_and_contiguous(seed: u64, candles: &[Candle]) {
    assert!(!candles.is_empty(), "no candles");
    let step = candles[0].key.interval.duration_ms();
    for pair in candles.windows(2) {
        assert_eq!(
            pair[1].open_time,
            pair[0].open_time + step,
            "gap or disorder after {}",
            pair[0].open_time
        );
    }
    let n = candles.len();
    for (i, candle) in candles.iter().enumerate() {
        if candle.closed {
            assert_eq!(
                *candle,
                final_candle(seed, &candle.key, candle.open_time),
                "closed candle differs"
            );
        } else {
            assert!(
                i + 2 >= n,
                "candle {} of {n} is still open: {candle:?}",
                i + 1
            );
            assert!(
                step_of(seed, candle).is_some(),
                "open candle is no simulator state: {candle:?}"
            );
        }
    }
}
