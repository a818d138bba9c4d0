//! Binance USDT-M futures ([`ExchangeId::BinanceFutures`]): the pure
//! protocol code of the adapter, with no sockets.
//!
//! It owns:
//! - [`wire`]: the documented REST and WebSocket payloads as serde types;
//! - [`rest`]: URLs of `GET /fapi/v1/klines` and `GET /fapi/v1/exchangeInfo`,
//!   page planning over the 1500-row limit, request weights, decoding of
//!   responses into [`Candle`](ohlcv_domain::Candle)s and [`Symbol`]s, and
//!   HTTP errors into retryable or final [`ExchangeError`]s;
//! - [`ws`]: stream names, the routed `/market` URL, subscribe planning
//!   within the per-connection limits, and decoding of text frames;
//! - here: the mapping of our [`Interval`]s and [`Symbol`]s to Binance's
//!   names, and the default endpoints.
//!
//! There is no [`MarketSource`](crate::MarketSource) implementation yet and
//! the adapter is **not** in the registry ([`crate::registry::ADAPTERS`]):
//! enabling `binance_futures` is still refused. The networking (HTTP client,
//! WebSocket connection, pacing and the silence watch) comes in a later step
//! and only drives the functions here.
//!
//! Every function here is total: any input, however malformed, gives a value
//! or an [`ExchangeError`] naming what was wrong, never a
//! panic.

pub mod adapter;
pub mod rest;
pub mod wire;
pub mod ws;

use ohlcv_domain::{ExchangeId, Interval, Symbol};

use crate::source::ExchangeError;

/// The exchange this module speaks to.
pub const EXCHANGE: ExchangeId = ExchangeId::BinanceFutures;

/// Public REST base URL of USDT-M futures, used when the config sets no
/// `rest_url`.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info>
pub const REST_URL: &str = "https://fapi.binance.com";

/// Public WebSocket base URL of USDT-M futures, used when the config sets no
/// `ws_url`; the routed path ([`ws::MARKET_PATH`]) is appended to it.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams>
pub const WS_URL: &str = "wss://fstream.binance.com";

/// Longest raw payload kept in an [`ExchangeError::Decode`], so one huge
/// response cannot flood the log.
const MAX_RAW_IN_ERROR: usize = 512;

/// Binance's name of `interval` (`1m`, `1h`, `1w`, …), `None` when Binance
/// has no such interval.
///
/// Binance serves 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M, so every
/// interval we know has a name today; weekly candles open on Monday 00:00
/// UTC on both sides.
///
/// Docs: <https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Kline-Candlestick-Streams>
pub const fn interval_name(interval: Interval) -> Option<&'static str> {
    // Binance's names are ours (`1m`, `1h`, `1d`, `1w`).
    Some(interval.as_str())
}

/// Our interval for Binance's name, `None` for a name we do not collect
/// (`8h`, `3d`, `1M`) or do not know.
pub fn interval_from_name(name: &str) -> Option<Interval> {
    Interval::ALL
        .into_iter()
        .find(|&i| interval_name(i) == Some(name))
}

/// The intervals this adapter can serve: those Binance has a name for.
pub fn supported_intervals() -> Vec<Interval> {
    Interval::ALL
        .into_iter()
        .filter(|&i| interval_name(i).is_some())
        .collect()
}

/// The symbol as REST requests and payloads spell it: upper case, the same
/// as ours (`BTCUSDT`).
pub fn rest_symbol(symbol: &Symbol) -> &str {
    symbol.as_str()
}

/// The symbol as stream names spell it: lower case (`btcusdt`).
pub fn stream_symbol(symbol: &Symbol) -> String {
    symbol.as_str().to_ascii_lowercase()
}

/// Our symbol for one Binance spells in a payload or a stream name, either
/// case (`BTCUSDT` or `btcusdt`).
///
/// # Errors
/// [`ExchangeError::Decode`] naming `field` when the text is not a symbol we
/// can store (Binance lists a few with non-ASCII names).
pub fn symbol_from_wire(text: &str, field: &str) -> Result<Symbol, ExchangeError> {
    // Binance sends upper case: copy only for the rare lower-case name.
    let upper = if text.bytes().any(|b| b.is_ascii_lowercase()) {
        std::borrow::Cow::Owned(text.to_ascii_uppercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    Symbol::new(&upper).map_err(|e| decode_error(format!("{field}: {e}"), text))
}

/// An [`ExchangeError::Decode`] with `reason` and the start of `raw`
/// ([`truncated`]).
pub(crate) fn decode_error(reason: impl Into<String>, raw: &str) -> ExchangeError {
    ExchangeError::Decode {
        reason: reason.into(),
        raw: truncated(raw),
    }
}

/// The first `MAX_RAW_IN_ERROR` bytes of `raw`, cut on a character
/// boundary, for an error that keeps the payload for the log.
pub(crate) fn truncated(raw: &str) -> String {
    let mut end = raw.len().min(MAX_RAW_IN_ERROR);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw[..end].to_owned()
}

/// Parses a decimal string field (a price or a volume) into a finite,
/// non-negative number.
///
/// # Errors
/// [`ExchangeError::Decode`] naming `field` otherwise.
pub(crate) fn parse_decimal(field: &str, text: &str) -> Result<f64, ExchangeError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(decode_error(
            format!("{field} is {v}, not a finite non-negative number"),
            text,
        )),
        Err(e) => Err(decode_error(
            format!("{field} {text:?} is not a decimal number: {e}"),
            text,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_maps_to_binance_and_back() {
        let table = [
            (Interval::M1, "1m"),
            (Interval::M3, "3m"),
            (Interval::M5, "5m"),
            (Interval::M15, "15m"),
            (Interval::M30, "30m"),
            (Interval::H1, "1h"),
            (Interval::H2, "2h"),
            (Interval::H4, "4h"),
            (Interval::H6, "6h"),
            (Interval::H12, "12h"),
            (Interval::D1, "1d"),
            (Interval::W1, "1w"),
        ];
        for (interval, name) in table {
            assert_eq!(interval_name(interval), Some(name));
            assert_eq!(interval_from_name(name), Some(interval));
        }
        assert_eq!(supported_intervals(), Interval::ALL.to_vec());
        for not_ours in ["8h", "3d", "1M", "", "1H", "60"] {
            assert_eq!(interval_from_name(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn symbols_map_both_ways() {
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(rest_symbol(&btc), "BTCUSDT");
        assert_eq!(stream_symbol(&btc), "btcusdt");
        assert_eq!(symbol_from_wire("btcusdt", "s").unwrap(), btc);
        assert_eq!(symbol_from_wire("BTCUSDT", "s").unwrap(), btc);
        let err = symbol_from_wire("币安人生USDT", "k.s").unwrap_err();
        assert!(err.to_string().contains("k.s"), "{err}");
    }

    #[test]
    fn decimals_are_finite_and_non_negative() {
        assert_eq!(parse_decimal("open", "0.01634790").unwrap(), 0.0163479);
        for bad in ["", "abc", "NaN", "inf", "-1", "1e400"] {
            let err = parse_decimal("open", bad).unwrap_err();
            assert!(err.to_string().contains("open"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn decode_errors_cut_the_raw_payload_on_a_char_boundary() {
        let raw = "é".repeat(MAX_RAW_IN_ERROR);
        match decode_error("x", &raw) {
            ExchangeError::Decode { raw, .. } => assert!(raw.len() <= MAX_RAW_IN_ERROR),
            other => panic!("{other:?}"),
        }
    }
}
