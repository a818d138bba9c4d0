//! The body of `GET /ohlcv`, written straight from the candles.
//!
//! [`write_rows`] gives the JSON array of [`OhlcvRow`](super::http::OhlcvRow)s
//! byte for byte as `serde_json::to_vec(&Vec<OhlcvRow>)` does, without
//! building the rows or going through serde: one buffer sized up front,
//! integers through `itoa` and floats through `zmij`, the formatters
//! serde_json itself calls (it moved from `ryu` to `zmij` in 1.0.146; using
//! the same crate keeps the bytes identical whatever digits either picks).
//! The unit tests hold the two outputs equal, edge values included.

use ohlcv_domain::Candle;

/// The fixed text of one row before its timestamp.
const TIMESTAMP: &[u8] = br#"{"timestamp":"#;
/// The fixed text before each float field, in the order of [`OhlcvRow`](super::http::OhlcvRow).
const FIELDS: [&[u8]; 5] = [
    br#","open":"#,
    br#","high":"#,
    br#","low":"#,
    br#","close":"#,
    br#","volume":"#,
];
/// The fixed text before `closed`.
const CLOSED: &[u8] = br#","closed":"#;

/// Longest text of one `f64`: `-2.2250738585072014e-308` (24 bytes; `null`
/// is shorter).
const MAX_FLOAT_LEN: usize = 24;
/// Longest text of one `i64`: `-9223372036854775808` (20 bytes).
const MAX_INT_LEN: usize = 20;

/// Longest text of one row, with the comma that separates it from the
/// next: no candle needs more, so the buffer never grows while writing.
pub const MAX_ROW_LEN: usize = TIMESTAMP.len()
    + MAX_INT_LEN
    + FIELDS[0].len()
    + FIELDS[1].len()
    + FIELDS[2].len()
    + FIELDS[3].len()
    + FIELDS[4].len()
    + 5 * MAX_FLOAT_LEN
    + CLOSED.len()
    + "false}".len()
    + ",".len();

/// The candles as the JSON array of `/ohlcv` rows, identical to
/// `serde_json::to_vec(&rows)` for the `Vec<OhlcvRow>` of the same candles.
/// Sized for the longest possible rows up front (about 210 bytes each,
/// some 1.6 times the typical row): one allocation, no copy while growing.
pub fn write_rows(candles: &[Candle]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + candles.len() * MAX_ROW_LEN);
    out.push(b'[');
    let mut int = itoa::Buffer::new();
    let mut float = zmij::Buffer::new();
    for (i, candle) in candles.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(TIMESTAMP);
        out.extend_from_slice(int.format(candle.open_time).as_bytes());
        let values = [
            candle.open,
            candle.high,
            candle.low,
            candle.close,
            candle.volume,
        ];
        for (field, value) in FIELDS.iter().zip(values) {
            out.extend_from_slice(field);
            write_f64(&mut out, &mut float, value);
        }
        out.extend_from_slice(CLOSED);
        out.extend_from_slice(if candle.closed { b"true}" } else { b"false}" });
    }
    out.push(b']');
    out
}

/// One float as serde_json writes it: the shortest text that reads back as
/// the same value, or `null` for NaN and the infinities (storage refuses
/// them, but an answer must not panic or lie if one ever got through).
fn write_f64(out: &mut Vec<u8>, buffer: &mut zmij::Buffer, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(buffer.format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};

    use super::*;
    use crate::gateway::http::OhlcvRow;

    /// A candle of a fixed series with the given fields.
    fn candle(open_time: i64, values: [f64; 5], closed: bool) -> Candle {
        let [open, high, low, close, volume] = values;
        Candle {
            key: SeriesKey::new(
                ExchangeId::Simulated,
                Symbol::new("BTCUSDT").unwrap(),
                Interval::M1,
            ),
            open_time,
            open,
            high,
            low,
            close,
            volume,
            closed,
        }
    }

    /// What the route answered before: serde_json over the rows.
    fn serde_bytes(candles: &[Candle]) -> Vec<u8> {
        let rows: Vec<OhlcvRow> = candles.iter().map(OhlcvRow::from).collect();
        serde_json::to_vec(&rows).unwrap()
    }

    /// Floats whose text takes each of the formatter's paths: zero and
    /// negative zero, subnormals, the extremes, exponents either side of
    /// the switch to scientific notation, and long fractions.
    const EDGES: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1e-7,
        1e-6,
        1e-5,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        -2.2250738585072014e-308,
        1e15,
        1e16,
        1e17,
        1e20,
        1e21,
        1e22,
        -1e21,
        123_456_789.123_456_78,
        43251.7,
        0.000_123_4,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        9007199254740993.0,
        -98765.4321,
    ];

    #[test]
    fn an_empty_slice_is_an_empty_array() {
        assert_eq!(write_rows(&[]), b"[]");
        assert_eq!(write_rows(&[]), serde_bytes(&[]));
    }

    #[test]
    fn every_edge_value_is_written_as_serde_json_writes_it() {
        let times = [i64::MIN, -1, 0, 1, 1_704_277_020_000, i64::MAX];
        let mut candles = Vec::new();
        for (i, value) in EDGES.iter().enumerate() {
            // Each edge value in every field, and in a different field
            // from its neighbours.
            let mut values = [1.5; 5];
            values[i % 5] = *value;
            candles.push(candle(times[i % times.len()], values, i % 2 == 0));
            candles.push(candle(
                times[(i + 1) % times.len()],
                [*value; 5],
                i % 2 == 1,
            ));
        }
        let written = write_rows(&candles);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(serde_bytes(&candles)).unwrap()
        );
    }

    #[test]
    fn many_varied_candles_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(8);
        let candles: Vec<Candle> = (0..5000)
            .map(|i| {
                // Prices of every magnitude, some exactly representable, some
                // arbitrary bit patterns (finite ones), volumes with long
                // fractions.
                let random_bits = loop {
                    let value = f64::from_bits(rng.u64(..));
                    if value.is_finite() {
                        break value;
                    }
                };
                let price = 43_251.7 + (i as f64) * 0.37 - rng.f64() * 1000.0;
                let values = [
                    price,
                    price * (1.0 + rng.f64() / 100.0),
                    random_bits,
                    (price * 100.0).round() / 100.0,
                    rng.f64() * 10f64.powi(rng.i32(-12..25)),
                ];
                candle(rng.i64(..), values, rng.bool())
            })
            .collect();
        assert_eq!(write_rows(&candles), serde_bytes(&candles));
    }

    #[test]
    fn non_finite_values_are_written_as_null_without_panicking() {
        let candles = [candle(
            0,
            [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN, 1.0],
            true,
        )];
        let written = write_rows(&candles);
        assert_eq!(written, serde_bytes(&candles));
        assert_eq!(
            written,
            br#"[{"timestamp":0,"open":null,"high":null,"low":null,"close":null,"volume":1.0,"closed":true}]"#
        );
    }

    #[test]
    fn no_row_is_longer_than_the_room_made_for_it() {
        let longest = candle(i64::MIN, [-2.2250738585072014e-308; 5], false);
        let written = write_rows(&[longest.clone(), longest]);
        // Two rows (one comma between them) and the brackets.
        assert!(written.len() <= 2 + 2 * MAX_ROW_LEN, "{}", written.len());
        assert_eq!(written.len(), 2 + 2 * MAX_ROW_LEN - 1);
    }
}
