//! Candle intervals and their alignment to UTC boundaries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-01 was a Thursday; weekly candles open on Monday 00:00 UTC
/// (Binance, Bybit and OKX's `1Wutc` agree), four days after the epoch.
const WEEK_OFFSET_MS: i64 = 4 * DAY_MS;

/// A candle interval the collector knows. Which of them an exchange serves
/// is its adapter's answer, asked of the adapter registry (crate
/// `ohlcv-exchanges`); today every adapter serves all of them.
///
/// Monthly candles are left out on purpose: they have no fixed length, and
/// every gap check in the collector relies on `open_time + duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    /// One minute.
    M1,
    /// Three minutes.
    M3,
    /// Five minutes.
    M5,
    /// Fifteen minutes.
    M15,
    /// Thirty minutes.
    M30,
    /// One hour.
    H1,
    /// Two hours.
    H2,
    /// Four hours.
    H4,
    /// Six hours.
    H6,
    /// Twelve hours.
    H12,
    /// One UTC day.
    D1,
    /// One week, opening Monday 00:00 UTC.
    W1,
}

impl Interval {
    /// Every supported interval, shortest first.
    pub const ALL: [Interval; 12] = [
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H12,
        Interval::D1,
        Interval::W1,
    ];

    /// The name used in config files, routes and the database (`1m`, `1h`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::W1 => "1w",
        }
    }

    /// Length of one candle in milliseconds.
    pub const fn duration_ms(self) -> i64 {
        match self {
            Interval::M1 => MINUTE_MS,
            Interval::M3 => 3 * MINUTE_MS,
            Interval::M5 => 5 * MINUTE_MS,
            Interval::M15 => 15 * MINUTE_MS,
            Interval::M30 => 30 * MINUTE_MS,
            Interval::H1 => HOUR_MS,
            Interval::H2 => 2 * HOUR_MS,
            Interval::H4 => 4 * HOUR_MS,
            Interval::H6 => 6 * HOUR_MS,
            Interval::H12 => 12 * HOUR_MS,
            Interval::D1 => DAY_MS,
            Interval::W1 => 7 * DAY_MS,
        }
    }

    /// Open time (UTC ms) of the candle that contains `time_ms`.
    pub const fn align(self, time_ms: i64) -> i64 {
        let offset = match self {
            Interval::W1 => WEEK_OFFSET_MS,
            _ => 0,
        };
        let d = self.duration_ms();
        (time_ms - offset).div_euclid(d) * d + offset
    }

    /// Whether `time_ms` is the open time of a candle of this interval.
    pub const fn is_aligned(self, time_ms: i64) -> bool {
        self.align(time_ms) == time_ms
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no supported interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown interval {0:?}: expected one of 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d, 1w"
)]
pub struct UnknownInterval(pub String);

impl FromStr for Interval {
    type Err = UnknownInterval;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| UnknownInterval(s.to_owned()))
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>(), Ok(i));
            assert_eq!(serde_json::to_string(&i).unwrap(), format!("\"{i}\""));
        }
        assert!("1M".parse::<Interval>().is_err());
        assert!("60".parse::<Interval>().is_err());
    }

    #[test]
    fn aligns_to_utc_boundaries() {
        // 2024-01-03T10:17:42.123Z
        let t = 1_704_277_062_123;
        assert_eq!(Interval::M1.align(t), 1_704_277_020_000);
        assert_eq!(Interval::M15.align(t), 1_704_276_900_000);
        assert_eq!(Interval::H4.align(t), 1_704_268_800_000); // 08:00
        assert_eq!(Interval::D1.align(t), 1_704_240_000_000); // 2024-01-03T00:00
                                                              // Weekly candles open on Monday 2024-01-01T00:00Z.
        assert_eq!(Interval::W1.align(t), 1_704_067_200_000);
        assert!(Interval::W1.is_aligned(1_704_067_200_000));
        assert!(!Interval::M1.is_aligned(t));
        // Times before the epoch align downwards too.
        assert_eq!(Interval::M1.align(-1), -60_000);
    }
}
