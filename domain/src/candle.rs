//! The normalised candle: every exchange's wire format converts into this.

use serde::{Deserialize, Serialize};

use crate::{ExchangeId, Interval, Symbol};

/// Identifies one candle series: an exchange, a symbol and an interval.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Where the candles come from.
    pub exchange: ExchangeId,
    /// The normalised symbol (`BTCUSDT`).
    pub symbol: Symbol,
    /// The candle length.
    pub interval: Interval,
}

impl SeriesKey {
    /// Builds a key from its parts.
    pub fn new(exchange: ExchangeId, symbol: Symbol, interval: Interval) -> Self {
        SeriesKey {
            exchange,
            symbol,
            interval,
        }
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.exchange, self.symbol, self.interval)
    }
}

/// One OHLCV candle, open or closed.
///
/// `open_time` is the candle's open time in UTC milliseconds, aligned to its
/// interval. An open (`closed == false`) candle is updated in place until the
/// exchange closes it; the last update wins everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    /// Which series the candle belongs to.
    pub key: SeriesKey,
    /// Open time, UTC milliseconds.
    pub open_time: i64,
    /// First traded price of the interval.
    pub open: f64,
    /// Highest traded price.
    pub high: f64,
    /// Lowest traded price.
    pub low: f64,
    /// Last traded price (so far, while open).
    pub close: f64,
    /// Traded volume in the base asset.
    pub volume: f64,
    /// Whether the exchange has closed the candle; a closed candle is final.
    pub closed: bool,
}

/// Why a candle received from an exchange cannot be stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidCandle {
    /// The open time is not on an interval boundary.
    #[error("open time {open_time} is not aligned to {interval}")]
    Unaligned {
        /// The offending open time.
        open_time: i64,
        /// The series interval.
        interval: Interval,
    },
    /// A price or the volume is NaN, infinite or negative.
    #[error("{field} is {value}, not a finite non-negative number")]
    NotFinite {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// High is below low, or open/close lie outside [low, high].
    #[error("prices are inconsistent: open {open}, high {high}, low {low}, close {close}")]
    Inconsistent {
        /// Open price.
        open: f64,
        /// High price.
        high: f64,
        /// Low price.
        low: f64,
        /// Close price.
        close: f64,
    },
}

impl Candle {
    /// Open time of the next candle of the series.
    pub fn next_open_time(&self) -> i64 {
        self.open_time + self.key.interval.duration_ms()
    }

    /// Checks what every exchange guarantees, so a corrupt payload is refused
    /// at the door instead of being stored.
    ///
    /// # Errors
    /// [`InvalidCandle`] naming the first violated rule.
    pub fn validate(&self) -> Result<(), InvalidCandle> {
        if !self.key.interval.is_aligned(self.open_time) {
            return Err(InvalidCandle::Unaligned {
                open_time: self.open_time,
                interval: self.key.interval,
            });
        }
        for (field, value) in [
            ("open", self.open),
            ("high", self.high),
            ("low", self.low),
            ("close", self.close),
            ("volume", self.volume),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(InvalidCandle::NotFinite { field, value });
            }
        }
        let in_range = |p: f64| self.low <= p && p <= self.high;
        if !(in_range(self.open) && in_range(self.close)) {
            return Err(InvalidCandle::Inconsistent {
                open: self.open,
                high: self.high,
                low: self.low,
                close: self.close,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle() -> Candle {
        Candle {
            key: SeriesKey::new(
                ExchangeId::Simulated,
                Symbol::new("BTCUSDT").unwrap(),
                Interval::M1,
            ),
            open_time: 1_704_277_020_000,
            open: 10.0,
            high: 12.0,
            low: 9.0,
            close: 11.0,
            volume: 3.5,
            closed: true,
        }
    }

    #[test]
    fn validation_accepts_a_sound_candle_and_names_each_fault() {
        assert_eq!(candle().validate(), Ok(()));
        assert_eq!(candle().next_open_time(), 1_704_277_080_000);

        let mut c = candle();
        c.open_time += 1;
        assert!(matches!(c.validate(), Err(InvalidCandle::Unaligned { .. })));

        let mut c = candle();
        c.volume = f64::NAN;
        assert!(matches!(
            c.validate(),
            Err(InvalidCandle::NotFinite {
                field: "volume",
                ..
            })
        ));

        let mut c = candle();
        c.high = 8.0;
        assert!(matches!(
            c.validate(),
            Err(InvalidCandle::Inconsistent { .. })
        ));
    }
}
