//! Bybit v5 linear perpetuals (`bybit_futures`): the pure protocol code,
//! with no sockets.
//!
//! It owns:
//! - [`wire`]: the documented payloads as serde types (REST kline and
//!   instruments, WebSocket kline push, subscribe, ping/pong);
//! - [`rest`]: URL builders, backfill page planning, instruments cursor
//!   paging and decoding of REST bodies into candles and symbols;
//! - [`ws`]: topic names, subscribe and ping messages, and decoding of a
//!   text frame into candle updates or control replies;
//! - the mappings of our [`Interval`] and [`Symbol`] to Bybit's names, and
//!   the one conversion of a Bybit candle into our [`Candle`]
//!   ([`to_candle`]), shared by REST and WebSocket.
//!
//! Not yet here: the [`MarketSource`](crate::MarketSource) implementation
//! (HTTP client, WebSocket connection, keep-alive timer, reconnects). Until
//! it exists this adapter is **not** registered in
//! [`registry::ADAPTERS`](crate::registry::ADAPTERS), so enabling
//! `bybit_futures` in a config is still refused.

pub mod adapter;
pub mod rest;
pub mod wire;
pub mod ws;

use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

use crate::source::ExchangeError;

/// Mainnet REST base URL ("Mainnet (both endpoints are available):
/// `https://api.bybit.com`, `https://api.bytick.com`",
/// <https://bybit-exchange.github.io/docs/v5/guide>); the config may
/// override it (tests point it at loopback). Paths such as
/// [`rest::KLINE_PATH`] are appended to it.
pub const REST_URL: &str = "https://api.bybit.com";

/// Mainnet WebSocket base URL; [`WS_PATH`] is appended to it.
pub const WS_URL: &str = "wss://stream.bybit.com";

/// The public stream of USDT/USDC perpetuals ("USDT, USDC perpetual & USDC
/// Futures: wss://stream.bybit.com/v5/public/linear",
/// <https://bybit-exchange.github.io/docs/v5/ws/connect>).
pub const WS_PATH: &str = "/v5/public/linear";

/// The exchange this module speaks for.
pub const EXCHANGE: ExchangeId = ExchangeId::BybitFutures;

/// Longest raw payload kept in a [`ExchangeError::Decode`], so one huge
/// body cannot flood the log.
const MAX_RAW_IN_ERROR: usize = 2_000;

/// Bybit's kline interval name for `interval` (`1`, `3`, … `720`, `D`,
/// `W`), or `None` for an interval Bybit does not serve.
///
/// Bybit's names are "1,3,5,15,30,60,120,240,360,720,D,M,W"
/// (<https://bybit-exchange.github.io/docs/v5/market/kline>); every
/// interval we know has one. Bybit's `M` (month) has no [`Interval`]: a
/// month has no fixed length. The match is exhaustive on purpose, so a new
/// [`Interval`] must be decided here.
pub const fn interval_name(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1",
        Interval::M3 => "3",
        Interval::M5 => "5",
        Interval::M15 => "15",
        Interval::M30 => "30",
        Interval::H1 => "60",
        Interval::H2 => "120",
        Interval::H4 => "240",
        Interval::H6 => "360",
        Interval::H12 => "720",
        Interval::D1 => "D",
        Interval::W1 => "W",
    })
}

/// The [`Interval`] Bybit calls `name`, or `None` (`M`, or anything else).
pub fn interval_from_name(name: &str) -> Option<Interval> {
    Interval::ALL
        .into_iter()
        .find(|&i| interval_name(i) == Some(name))
}

/// Bybit's name of a linear symbol: the same text as ours (`BTCUSDT`), as
/// the docs' examples show (`symbol=BTCUSDT`, `kline.30.BTCUSDT`).
pub fn symbol_name(symbol: &Symbol) -> &str {
    symbol.as_str()
}

/// Our symbol for Bybit's `name`.
///
/// # Errors
/// [`ExchangeError::Decode`] when `name` is not a symbol like `BTCUSDT`.
pub fn symbol_from_name(name: &str) -> Result<Symbol, ExchangeError> {
    Symbol::new(name).map_err(|e| decode_error(format!("symbol: {e}"), name))
}

/// The key of a Bybit series.
pub fn series_key(symbol: Symbol, interval: Interval) -> SeriesKey {
    SeriesKey::new(EXCHANGE, symbol, interval)
}

/// The prices and base-asset volume of one Bybit candle as the wire carries
/// them (decimal strings), before conversion.
#[derive(Debug, Clone, Copy)]
pub struct WireCandle<'a> {
    /// Open time, UTC ms.
    pub start: i64,
    /// Open price.
    pub open: &'a str,
    /// Highest price.
    pub high: &'a str,
    /// Lowest price.
    pub low: &'a str,
    /// Close (last) price.
    pub close: &'a str,
    /// Trade volume: for USDT contracts a quantity of the base coin.
    pub volume: &'a str,
}

/// The one conversion from a Bybit candle to our [`Candle`], used by REST
/// rows and WebSocket pushes alike. `at` names where the candle sits in
/// its payload (`result.list[2]`, `data[0]`) for error messages.
///
/// # Errors
/// [`ExchangeError::Decode`] naming the field when a price or the volume
/// is not a decimal number, or when the candle breaks
/// [`Candle::validate`] (unaligned start, negative or inconsistent prices).
pub fn to_candle(
    key: &SeriesKey,
    wire: WireCandle<'_>,
    closed: bool,
    at: &str,
) -> Result<Candle, ExchangeError> {
    let number = |field: &str, text: &str| -> Result<f64, ExchangeError> {
        text.parse::<f64>()
            .map_err(|_| decode_error(format!("{at}.{field}: {text:?} is not a number"), text))
    };
    let candle = Candle {
        key: key.clone(),
        open_time: wire.start,
        open: number("open", wire.open)?,
        high: number("high", wire.high)?,
        low: number("low", wire.low)?,
        close: number("close", wire.close)?,
        volume: number("volume", wire.volume)?,
        closed,
    };
    candle.validate().map_err(|e| {
        decode_error(
            format!("{at}: {e}"),
            &format!(
                "{key} start {} open {} high {} low {} close {} volume {}",
                wire.start, wire.open, wire.high, wire.low, wire.close, wire.volume
            ),
        )
    })?;
    Ok(candle)
}

/// A decode error keeping (a prefix of) the raw payload for the log.
fn decode_error(reason: String, raw: &str) -> ExchangeError {
    let mut end = raw.len().min(MAX_RAW_IN_ERROR);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    ExchangeError::Decode {
        reason,
        raw: raw[..end].to_owned(),
    }
}

/// Deserialises `body` as `T`; a failure names the JSON path of the bad
/// field (`result.list[1][3]`).
fn decode_json<'de, T: serde::Deserialize<'de>>(
    body: &'de str,
    what: &str,
) -> Result<T, ExchangeError> {
    let de = &mut serde_json::Deserializer::from_str(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| decode_error(format!("{what}: {}: {}", e.path(), e.inner()), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_has_a_bybit_name_that_maps_back() {
        let names: Vec<_> = Interval::ALL
            .into_iter()
            .map(|i| interval_name(i).unwrap())
            .collect();
        assert_eq!(
            names,
            ["1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W"]
        );
        for i in Interval::ALL {
            assert_eq!(interval_from_name(interval_name(i).unwrap()), Some(i));
        }
        for other in ["M", "1m", "", "2", "d"] {
            assert_eq!(interval_from_name(other), None, "{other:?}");
        }
    }

    #[test]
    fn symbols_keep_their_name() {
        let s = symbol_from_name("1000PEPEUSDT").unwrap();
        assert_eq!(symbol_name(&s), "1000PEPEUSDT");
        assert!(matches!(
            symbol_from_name("BTC-27DEC24"),
            Err(ExchangeError::Decode { .. })
        ));
    }

    #[test]
    fn conversion_names_the_bad_field() {
        let key = series_key(Symbol::new("BTCUSDT").unwrap(), Interval::M1);
        let good = WireCandle {
            start: 60_000,
            open: "1",
            high: "2",
            low: "0.5",
            close: "1.5",
            volume: "10",
        };
        let c = to_candle(&key, good, true, "data[0]").unwrap();
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (1.0, 2.0, 0.5, 1.5, 10.0)
        );

        let cases = [
            (WireCandle { close: "x", ..good }, "data[0].close"),
            (WireCandle { volume: "", ..good }, "data[0].volume"),
            (
                WireCandle {
                    volume: "-1",
                    ..good
                },
                "volume is -1",
            ),
            (WireCandle { start: 1, ..good }, "not aligned"),
            (
                WireCandle {
                    high: "0.1",
                    ..good
                },
                "inconsistent",
            ),
            (
                WireCandle {
                    open: "NaN",
                    ..good
                },
                "open is NaN",
            ),
        ];
        for (wire, expected) in cases {
            match to_candle(&key, wire, false, "data[0]") {
                Err(ExchangeError::Decode { reason, .. }) => {
                    assert!(reason.contains(expected), "{reason:?} lacks {expected:?}")
                }
                other => panic!("{wire:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn decode_errors_keep_a_bounded_prefix_of_the_payload() {
        let raw = "é".repeat(MAX_RAW_IN_ERROR);
        let ExchangeError::Decode { raw: kept, .. } = decode_error("x".into(), &raw) else {
            unreachable!()
        };
        assert!(kept.len() <= MAX_RAW_IN_ERROR && raw.starts_with(&kept));
    }
}
