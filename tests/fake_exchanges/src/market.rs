//! The deterministic market every fake serves: what "the exchange holds".
//!
//! Every candle's final values are a pure function of (symbol, interval,
//! alignment, open time); the open candle's partial state is a prefix of a
//! fixed intraday path, so REST, WebSocket and the test's expectation agree
//! without sharing any mutable state.

use std::sync::Arc;

use ohlcv_domain::Interval;

/// Steps of the intraday path of one candle: the partial state changes at
/// most this many times per candle and is exactly the final one at the end.
const STEPS: i64 = 600;

/// One listed instrument of the fake market.
#[derive(Debug, Clone)]
pub(crate) struct Instrument {
    /// Market symbol, `BTCUSDT`.
    pub symbol: &'static str,
    /// Base asset, `BTC`.
    pub base: &'static str,
    /// Decimals of prices ("43251.3" has one).
    pub price_decimals: u32,
    /// Typical price in ticks.
    pub base_ticks: i64,
    /// OKX contract value in base units, as thousandths (BTC 0.01 → 10).
    pub ct_val_milli: i64,
    /// OKX `ctVal` as the exchange writes it.
    pub ct_val: &'static str,
}

pub(crate) const INSTRUMENTS: [Instrument; 3] = [
    Instrument {
        symbol: "BTCUSDT",
        base: "BTC",
        price_decimals: 1,
        base_ticks: 430_000,
        ct_val_milli: 10,
        ct_val: "0.01",
    },
    Instrument {
        symbol: "ETHUSDT",
        base: "ETH",
        price_decimals: 2,
        base_ticks: 230_000,
        ct_val_milli: 100,
        ct_val: "0.1",
    },
    Instrument {
        symbol: "SOLUSDT",
        base: "SOL",
        price_decimals: 3,
        base_ticks: 100_000,
        ct_val_milli: 1000,
        ct_val: "1",
    },
];

/// How a venue's bar is aligned: a domain interval, shifted by `shift_ms`
/// (OKX's Hong Kong bars `1D`, `6H`, … open at UTC+8 boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bar {
    pub interval: Interval,
    pub shift_ms: i64,
}

impl Bar {
    pub const fn utc(interval: Interval) -> Bar {
        Bar {
            interval,
            shift_ms: 0,
        }
    }

    pub fn duration_ms(self) -> i64 {
        self.interval.duration_ms()
    }

    /// Open time of the bar containing `t`.
    pub fn align(self, t: i64) -> i64 {
        self.interval.align(t + self.shift_ms) - self.shift_ms
    }

    /// Open time of the first bar opening at or after `t`.
    pub fn align_up(self, t: i64) -> i64 {
        let a = self.align(t);
        if a == t {
            t
        } else {
            a + self.duration_ms()
        }
    }
}

struct Inner {
    listed_since_ms: i64,
    missing: Vec<(String, Interval, i64, i64)>,
}

/// The truth of a fake exchange: which perpetuals it lists and every candle
/// it has, so a test can compare the collector's database with it exactly.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Market {
    inner: Arc<Inner>,
}

/// One candle as the fake exchange has it, with the decimal strings the
/// venues send (prices with the instrument's fixed decimals, base volume
/// with three), so tests can compare text as well as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCandle {
    /// Open time, UTC milliseconds.
    pub open_time: i64,
    /// Open price.
    pub open: String,
    /// Highest price so far.
    pub high: String,
    /// Lowest price so far.
    pub low: String,
    /// Last price.
    pub close: String,
    /// Traded volume in the base asset (OKX `volCcy`).
    pub volume: String,
    /// Whether the candle's close time has passed (values are final).
    pub closed: bool,
}

impl FakeCandle {
    /// The values parsed as `(open, high, low, close, volume)`, for
    /// comparisons with a database holding floating-point numbers.
    pub fn values(&self) -> (f64, f64, f64, f64, f64) {
        let p = |s: &str| s.parse::<f64>().expect("fake candles hold decimal strings");
        (
            p(&self.open),
            p(&self.high),
            p(&self.low),
            p(&self.close),
            p(&self.volume),
        )
    }
}

/// A candle in integer units, with the extras some venues send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCandle {
    pub open_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    /// Base volume in thousandths.
    pub volume_milli: i64,
    pub trades: i64,
    pub first_trade_id: i64,
    pub closed: bool,
    pub decimals: u32,
}

impl RawCandle {
    pub fn price(&self, ticks: i64) -> String {
        fixed(ticks as i128, self.decimals)
    }
    pub fn open_s(&self) -> String {
        self.price(self.open)
    }
    pub fn high_s(&self) -> String {
        self.price(self.high)
    }
    pub fn low_s(&self) -> String {
        self.price(self.low)
    }
    pub fn close_s(&self) -> String {
        self.price(self.close)
    }
    pub fn volume_s(&self) -> String {
        fixed(self.volume_milli as i128, 3)
    }
    /// Quote volume (turnover): base volume × close, exact.
    pub fn quote_s(&self) -> String {
        fixed(
            self.volume_milli as i128 * self.close as i128,
            3 + self.decimals,
        )
    }
    /// Taker buy base volume: half of the volume (rounded down).
    pub fn taker_base_milli(&self) -> i64 {
        self.volume_milli / 2
    }
    pub fn taker_base_s(&self) -> String {
        fixed(self.taker_base_milli() as i128, 3)
    }
    pub fn taker_quote_s(&self) -> String {
        fixed(
            self.taker_base_milli() as i128 * self.close as i128,
            3 + self.decimals,
        )
    }
    pub fn to_fake(self) -> FakeCandle {
        FakeCandle {
            open_time: self.open_time,
            open: self.open_s(),
            high: self.high_s(),
            low: self.low_s(),
            close: self.close_s(),
            volume: self.volume_s(),
            closed: self.closed,
        }
    }
}

/// `value / 10^decimals` written with exactly `decimals` decimals.
pub(crate) fn fixed(value: i128, decimals: u32) -> String {
    let neg = value < 0;
    let v = value.unsigned_abs();
    let p = 10u128.pow(decimals);
    let s = if decimals == 0 {
        format!("{v}")
    } else {
        format!("{}.{:0w$}", v / p, v % p, w = decimals as usize)
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// [`fixed`] without trailing zeros (and without a trailing point).
pub(crate) fn trimmed(value: i128, decimals: u32) -> String {
    let s = fixed(value, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(symbol: &str, bar: Bar, open_time: i64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in symbol.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h ^ mix(bar.duration_ms() as u64 ^ mix(bar.shift_ms as u64 ^ mix(open_time as u64))))
}

pub(crate) fn instrument(symbol: &str) -> Option<&'static Instrument> {
    INSTRUMENTS.iter().find(|i| i.symbol == symbol)
}

impl Market {
    pub(crate) fn new(listed_since_ms: i64, missing: Vec<(String, Interval, i64, i64)>) -> Market {
        Market {
            inner: Arc::new(Inner {
                listed_since_ms,
                missing,
            }),
        }
    }

    /// The listed perpetuals a collector should find (`BTCUSDT`, `ETHUSDT`,
    /// `SOLUSDT`); the venues' instrument lists also carry a delivery
    /// contract and a non-trading one, which are not market symbols.
    pub fn symbols(&self) -> Vec<String> {
        INSTRUMENTS.iter().map(|i| i.symbol.to_owned()).collect()
    }

    /// The first open time the market has candles for.
    pub(crate) fn listed_since_ms(&self) -> i64 {
        self.inner.listed_since_ms
    }

    /// The candle as the exchange has it at wall-clock `now_ms`: final values
    /// and `closed` once `open_time + interval <= now_ms`, else the partial
    /// state so far. `None` for an unknown symbol, an unaligned or future
    /// open time, inside a configured hole, or before the listing.
    pub fn candle(
        &self,
        symbol: &str,
        interval: Interval,
        open_time: i64,
        now_ms: i64,
    ) -> Option<FakeCandle> {
        self.raw(symbol, Bar::utc(interval), open_time, now_ms)
            .map(RawCandle::to_fake)
    }

    /// Every closed candle with open time in `from..=to`, oldest first: what
    /// a complete database must hold exactly.
    pub fn closed_candles(
        &self,
        symbol: &str,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Vec<FakeCandle> {
        let now = crate::now_ms();
        let bar = Bar::utc(interval);
        let mut out = Vec::new();
        let mut t = bar.align_up(from.max(self.inner.listed_since_ms));
        while t <= to {
            if let Some(c) = self.raw(symbol, bar, t, now) {
                if c.closed {
                    out.push(c.to_fake());
                } else {
                    break;
                }
            } else if t + bar.duration_ms() > now {
                break;
            }
            t += bar.duration_ms();
        }
        out
    }

    pub(crate) fn is_missing(&self, symbol: &str, bar: Bar, open_time: i64) -> bool {
        bar.shift_ms == 0
            && self.inner.missing.iter().any(|(s, i, from, to)| {
                s == symbol && *i == bar.interval && *from <= open_time && open_time <= *to
            })
    }

    /// Whether the exchange has a row at `open_time` now (listed, past or
    /// current, not in a hole). The open time must be aligned.
    pub(crate) fn exists(&self, symbol: &str, bar: Bar, open_time: i64, now_ms: i64) -> bool {
        instrument(symbol).is_some()
            && open_time >= self.inner.listed_since_ms
            && open_time <= now_ms
            && bar.align(open_time) == open_time
            && !self.is_missing(symbol, bar, open_time)
    }

    /// Open times of the rows in `[from, to]` (aligned bounds), oldest first,
    /// at most `limit`, from the oldest (`newest == false`) or the newest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_times(
        &self,
        symbol: &str,
        bar: Bar,
        from: i64,
        to: i64,
        limit: usize,
        newest: bool,
        now_ms: i64,
    ) -> Vec<i64> {
        let d = bar.duration_ms();
        let lo = bar.align_up(from.max(self.inner.listed_since_ms));
        let hi = bar.align(to.min(now_ms));
        let mut out = Vec::new();
        if instrument(symbol).is_none() || lo > hi || limit == 0 {
            return out;
        }
        if newest {
            let mut t = hi;
            while t >= lo && out.len() < limit {
                if !self.is_missing(symbol, bar, t) {
                    out.push(t);
                }
                t -= d;
            }
            out.reverse();
        } else {
            let mut t = lo;
            while t <= hi && out.len() < limit {
                if !self.is_missing(symbol, bar, t) {
                    out.push(t);
                }
                t += d;
            }
        }
        out
    }

    /// The candle in integer units (see [`Market::candle`]).
    pub(crate) fn raw(
        &self,
        symbol: &str,
        bar: Bar,
        open_time: i64,
        now_ms: i64,
    ) -> Option<RawCandle> {
        if !self.exists(symbol, bar, open_time, now_ms) {
            return None;
        }
        let inst = instrument(symbol)?;
        let d = bar.duration_ms();
        let s0 = seed(symbol, bar, open_time);
        let r = |k: u64| mix(s0 ^ mix(k));
        let base = inst.base_ticks;
        // Open within ±5 % of the typical price; range growing with the
        // square root of the interval.
        let open = base - base / 20 + (r(1) % (base as u64 / 10)) as i64;
        let minutes = (d / 60_000).max(1);
        let range = ((base / 1000) as f64 * (minutes as f64).sqrt()).max(4.0) as i64;
        let close = (open - range / 2 + (r(2) % range as u64) as i64).max(1);
        let high = open.max(close) + 1 + (r(3) % (range as u64 / 2 + 1)) as i64;
        let low = (open.min(close) - 1 - (r(4) % (range as u64 / 2 + 1)) as i64).max(1);
        let volume = (1_000 + (r(5) % 100_000) as i64) * minutes;
        let trades = 10 + (r(6) % 1000) as i64 * minutes;
        let first_trade_id = (r(7) % 1_000_000_000) as i64 + 1;
        // Waypoints of the intraday path: the high and the low are reached
        // at distinct steps strictly inside the candle.
        let ih = 1 + (r(8) % (STEPS as u64 - 2)) as i64;
        let mut il = 1 + (r(9) % (STEPS as u64 - 2)) as i64;
        if il == ih {
            il = if ih + 1 < STEPS { ih + 1 } else { ih - 1 };
        }
        let elapsed = now_ms - open_time;
        let step = if elapsed >= d {
            STEPS
        } else {
            (elapsed as i128 * STEPS as i128 / d as i128) as i64
        };
        let mut points = [(0, open), (ih, high), (il, low), (STEPS, close)];
        points.sort();
        let price_at = |s: i64| -> i64 {
            for w in points.windows(2) {
                let ((s0, p0), (s1, p1)) = (w[0], w[1]);
                if s <= s1 {
                    return p0 + (p1 - p0) * (s - s0) / (s1 - s0);
                }
            }
            close
        };
        let last = price_at(step);
        let mut hi = open.max(last);
        let mut lo = open.min(last);
        for (s, p) in points {
            if s <= step {
                hi = hi.max(p);
                lo = lo.min(p);
            }
        }
        Some(RawCandle {
            open_time,
            open,
            high: hi,
            low: lo,
            close: last,
            volume_milli: volume * step / STEPS,
            trades: 1 + (trades - 1) * step / STEPS,
            first_trade_id,
            closed: step == STEPS,
            decimals: inst.price_decimals,
        })
    }
}
