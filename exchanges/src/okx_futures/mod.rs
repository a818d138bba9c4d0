//! The OKX v5 perpetual swap (`SWAP`) protocol, as pure functions: no
//! sockets, no HTTP client, no clock.
//!
//! It owns:
//! - the payloads as documented ([`wire`], examples in `test_data/*.json`);
//! - REST request building, page planning and response decoding ([`rest`]);
//! - WebSocket channel names, subscribe messages, keep-alive constants and
//!   frame decoding ([`ws`]);
//! - the mappings between our names and OKX's: [`bar`] for intervals,
//!   [`inst_id`] / [`symbol_from_inst_id`] for symbols;
//! - the one conversion from a wire row to our [`Candle`],
//!   [`candle_from_row`], used by both REST and WebSocket decoding.
//!
//! There is no [`MarketSource`](crate::MarketSource) implementation yet and
//! the exchange is not in the adapter [`registry`](crate::registry): the
//! networking (HTTP requests, the WebSocket connection, ping timers) is the
//! next step and will build on these functions.

pub mod adapter;
pub mod rest;
pub mod wire;
pub mod ws;

use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

use crate::source::ExchangeError;

/// The exchange this module speaks for.
pub const EXCHANGE: ExchangeId = ExchangeId::OkxFutures;

/// Production REST base URL; paths such as [`rest::CANDLES_PATH`] are
/// appended to it. Configurable so tests can point at loopback.
pub const REST_URL: &str = "https://www.okx.com";

/// Production WebSocket base URL; [`WS_PATH`] is appended to it.
pub const WS_URL: &str = "wss://ws.okx.com:8443";

/// The business WebSocket: candle channels live on `/ws/v5/business`, not
/// on `/ws/v5/public`.
pub const WS_PATH: &str = "/ws/v5/business";

/// Quote currencies a swap instId may have, tried in this order when
/// splitting our symbol: `USDT` and `USDC` before `USD`, so `BTCUSDT` is
/// `BTC` + `USDT` while `BTCUSD` is the inverse `BTC-USD-SWAP`. A symbol
/// with any other quote has no OKX swap.
pub const QUOTES: [&str; 3] = ["USDT", "USDC", "USD"];

/// Suffix of every perpetual swap instId.
const SWAP_SUFFIX: &str = "-SWAP";

/// Most characters of a raw payload kept in a decode error, for the log.
const RAW_LIMIT: usize = 512;

/// OKX's bar name for `interval`, or `None` when OKX has no such bar.
///
/// Bars of 6 hours and longer use the `…utc` variants (`6Hutc`, `12Hutc`,
/// `1Dutc`, `1Wutc`): the plain `6H`/`12H`/`1D`/`1W` open on UTC+8
/// (Hong Kong time), which would not line up with our UTC boundaries nor
/// with the other exchanges. Hour bars use an upper-case `H`, minute bars a
/// lower-case `m` (`1m`, `1H`; `1M` is a month).
pub const fn bar(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M3 => "3m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1H",
        Interval::H2 => "2H",
        Interval::H4 => "4H",
        Interval::H6 => "6Hutc",
        Interval::H12 => "12Hutc",
        Interval::D1 => "1Dutc",
        Interval::W1 => "1Wutc",
    })
}

/// The interval whose [`bar`] is `name`; `None` for bars we do not collect,
/// including the UTC+8 ones (`1D`, `6H`…).
pub fn interval_from_bar(name: &str) -> Option<Interval> {
    Interval::ALL.into_iter().find(|&i| bar(i) == Some(name))
}

/// Splits our symbol into base and quote by the known [`QUOTES`] suffixes.
fn split_symbol(symbol: &str) -> Option<(&str, &str)> {
    QUOTES.iter().find_map(|quote| {
        let base = symbol.strip_suffix(quote)?;
        (!base.is_empty()).then_some((base, *quote))
    })
}

/// The OKX instId of our symbol: `BTCUSDT` → `BTC-USDT-SWAP`.
///
/// The base is what is left after the quote suffix, tried in [`QUOTES`]
/// order (`USDT`, `USDC`, then `USD`).
///
/// # Errors
/// [`ExchangeError::Rejected`] naming the symbol when it ends in none of
/// the known quotes.
pub fn inst_id(symbol: &Symbol) -> Result<String, ExchangeError> {
    let (base, quote) = split_symbol(symbol.as_str()).ok_or_else(|| {
        ExchangeError::Rejected(format!(
            "{symbol:?} does not end in a known OKX quote currency (USDT, USDC, USD)"
        ))
    })?;
    Ok(format!("{base}-{quote}{SWAP_SUFFIX}"))
}

/// Our symbol for an OKX swap instId: `BTC-USDT-SWAP` → `BTCUSDT`.
///
/// # Errors
/// [`ExchangeError::Decode`] when `inst_id` is not `BASE-QUOTE-SWAP` with a
/// known quote, base and quote do not form a valid [`Symbol`], or
/// [`inst_id`] of that symbol would not give `inst_id` back.
pub fn symbol_from_inst_id(inst_id: &str) -> Result<Symbol, ExchangeError> {
    let bad = |why: &str| decode_error(format!("instId {inst_id:?} {why}"), inst_id);
    let pair = inst_id
        .strip_suffix(SWAP_SUFFIX)
        .ok_or_else(|| bad("is not a perpetual swap (BASE-QUOTE-SWAP)"))?;
    let (base, quote) = pair
        .split_once('-')
        .ok_or_else(|| bad("is not BASE-QUOTE-SWAP"))?;
    if base.is_empty() || !QUOTES.contains(&quote) {
        return Err(bad("has no base or a quote other than USDT, USDC or USD"));
    }
    let symbol = Symbol::new(&format!("{base}{quote}")).map_err(|e| bad(&e.to_string()))?;
    // Only instIds our symbol maps back to: two instIds must never share a
    // symbol.
    match self::inst_id(&symbol) {
        Ok(back) if back == inst_id => Ok(symbol),
        _ => Err(bad("does not map back from its symbol")),
    }
}

/// The series a WebSocket channel/instId pair belongs to.
///
/// # Errors
/// [`ExchangeError::Decode`] for a channel we do not collect or an instId
/// that is not a swap.
pub fn series_key(channel: &str, inst_id: &str) -> Result<SeriesKey, ExchangeError> {
    let interval = channel
        .strip_prefix("candle")
        .and_then(interval_from_bar)
        .ok_or_else(|| decode_error(format!("unknown candle channel {channel:?}"), channel))?;
    let symbol = symbol_from_inst_id(inst_id)?;
    Ok(SeriesKey::new(ExchangeId::OkxFutures, symbol, interval))
}

/// The one conversion from an OKX candle row to our [`Candle`], shared by
/// REST and WebSocket decoding.
///
/// `volume` is `volCcy`, which for derivatives OKX documents as the
/// quantity in base currency (BTC for `BTC-USDT-SWAP` and for the inverse
/// `BTC-USD-SWAP`), matching the other exchanges; `vol` counts contracts
/// and would need `ctVal` to mean anything. `closed` is `confirm == "1"`.
///
/// # Errors
/// [`ExchangeError::Decode`] naming the missing or malformed field; never
/// panics on any input.
pub fn candle_from_row<S: AsRef<str> + std::fmt::Debug>(
    key: &SeriesKey,
    row: &[S],
) -> Result<Candle, ExchangeError> {
    let raw = || format!("{row:?}");
    if row.len() < wire::ROW_FIELDS.len() {
        return Err(decode_error(
            format!(
                "candle row has {} fields, expected {} ({})",
                row.len(),
                wire::ROW_FIELDS.len(),
                wire::ROW_FIELDS.join(",")
            ),
            &raw(),
        ));
    }
    let number = |i: usize| -> Result<f64, ExchangeError> {
        row[i]
            .as_ref()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                decode_error(
                    format!(
                        "{} is {:?}, not a number",
                        wire::ROW_FIELDS[i],
                        row[i].as_ref()
                    ),
                    &raw(),
                )
            })
    };
    let open_time = row[0].as_ref().parse::<i64>().map_err(|_| {
        decode_error(
            format!("ts is {:?}, not Unix milliseconds", row[0].as_ref()),
            &raw(),
        )
    })?;
    let closed = match row[8].as_ref() {
        "1" => true,
        "0" => false,
        other => {
            return Err(decode_error(
                format!("confirm is {other:?}, not \"0\" or \"1\""),
                &raw(),
            ))
        }
    };
    Ok(Candle {
        key: key.clone(),
        open_time,
        open: number(1)?,
        high: number(2)?,
        low: number(3)?,
        close: number(4)?,
        volume: number(6)?,
        closed,
    })
}

/// A [`ExchangeError::Decode`] with `raw` cut to [`RAW_LIMIT`] characters.
fn decode_error(reason: String, raw: &str) -> ExchangeError {
    ExchangeError::Decode {
        reason,
        raw: raw.chars().take(RAW_LIMIT).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SeriesKey {
        SeriesKey::new(
            ExchangeId::OkxFutures,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        )
    }

    fn row(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bars_use_utc_variants_from_six_hours_and_round_trip() {
        let table = [
            (Interval::M1, "1m"),
            (Interval::M3, "3m"),
            (Interval::M5, "5m"),
            (Interval::M15, "15m"),
            (Interval::M30, "30m"),
            (Interval::H1, "1H"),
            (Interval::H2, "2H"),
            (Interval::H4, "4H"),
            (Interval::H6, "6Hutc"),
            (Interval::H12, "12Hutc"),
            (Interval::D1, "1Dutc"),
            (Interval::W1, "1Wutc"),
        ];
        for (interval, name) in table {
            assert_eq!(bar(interval), Some(name));
            assert_eq!(interval_from_bar(name), Some(interval));
        }
        for utc8 in ["6H", "12H", "1D", "1W", "1M", "1s", ""] {
            assert_eq!(interval_from_bar(utc8), None, "{utc8}");
        }
    }

    #[test]
    fn symbols_map_both_ways() {
        for (ours, theirs) in [
            ("BTCUSDT", "BTC-USDT-SWAP"),
            ("ETHUSDC", "ETH-USDC-SWAP"),
            ("BTCUSD", "BTC-USD-SWAP"),
            ("1000PEPEUSDT", "1000PEPE-USDT-SWAP"),
        ] {
            let symbol = Symbol::new(ours).unwrap();
            assert_eq!(inst_id(&symbol).unwrap(), theirs);
            assert_eq!(symbol_from_inst_id(theirs).unwrap(), symbol);
        }
        for bad in ["BTCEUR", "USDT"] {
            let err = inst_id(&Symbol::new(bad).unwrap()).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        for bad in [
            "BTC-USDT",
            "BTC-USDT-250328",
            "BTC-EUR-SWAP",
            "BTCUSDT-SWAP",
            "btc-USDT-SWAP",
            "-USDT-SWAP",
            "BTC-USDT-SWAP-SWAP",
            "",
        ] {
            assert!(symbol_from_inst_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_row_converts_with_volume_in_base_currency() {
        let fields = [
            "1704277020000",
            "42000.1",
            "42010",
            "41990.5",
            "42005",
            "1234",
            "12.34",
            "518400.5",
            "1",
        ];
        let c = candle_from_row(&key(), &row(&fields)).unwrap();
        assert_eq!(c.open_time, 1_704_277_020_000);
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (42000.1, 42010.0, 41990.5, 42005.0)
        );
        assert_eq!(c.volume, 12.34, "volume is volCcy, not vol (contracts)");
        assert!(c.closed);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_rows_name_the_field() {
        let good = [
            "1704277020000",
            "1",
            "2",
            "0.5",
            "1.5",
            "10",
            "0.1",
            "1",
            "0",
        ];
        let cases: [(usize, &str, &str); 5] = [
            (0, "1.7e12", "ts"),
            (2, "", "h"),
            (6, "NaN", "volCcy"),
            (8, "true", "confirm"),
            (4, "inf", "c"),
        ];
        for (index, value, field) in cases {
            let mut fields = row(&good);
            fields[index] = value.to_owned();
            let err = candle_from_row(&key(), &fields).unwrap_err();
            assert!(
                matches!(&err, ExchangeError::Decode { reason, .. } if reason.starts_with(field)),
                "{field}: {err}"
            );
        }
        let err = candle_from_row(&key(), &row(&good[..8])).unwrap_err();
        assert!(err.to_string().contains("8 fields"), "{err}");
        assert!(candle_from_row::<String>(&key(), &[]).is_err());
    }

    #[test]
    fn series_keys_come_from_channel_and_inst_id() {
        let k = series_key("candle1Dutc", "ETH-USDT-SWAP").unwrap();
        assert_eq!(k.interval, Interval::D1);
        assert_eq!(k.symbol.as_str(), "ETHUSDT");
        assert_eq!(k.exchange, ExchangeId::OkxFutures);
        assert!(series_key("candle1D", "ETH-USDT-SWAP").is_err());
        assert!(series_key("tickers", "ETH-USDT-SWAP").is_err());
    }
}
