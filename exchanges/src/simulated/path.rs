//! The simulated market itself: deterministic price paths and the candles
//! built on them, as pure functions with no I/O and no clock.
//!
//! # Price path
//!
//! The log-price of a symbol is multi-octave value noise: octave `k`
//! (`k` in `0..28`) has lattice points every `2^k` seconds, each holding a
//! hashed value in `[-1, 1]`, interpolated with smoothstep and weighted by
//! `σ·sqrt(2^k)`. Weighting by the square root of the spacing is Brownian
//! scaling, so the sum looks like a random walk on every time scale from a
//! second to years (the top octave spans about four years), yet the price at
//! any instant costs a fixed amount of work (28 octaves, two hashes each at
//! most) instead of a cumulative sum from an origin. The deviation from the symbol's base price is squashed smoothly
//! into `±2.5` in log space, so prices stay within about `base/12 ..
//! base·12` forever: always finite and positive.
//!
//! # Determinism
//!
//! The same seed, symbol and time give the same price on every machine:
//! lattice values come from `splitmix64`, and every floating-point operation
//! is one IEEE 754 guarantees to be correctly rounded (`+ - * /`, `sqrt`,
//! `round`, comparisons; Rust never fuses them into FMAs on its own). `exp`
//! is therefore computed here ([`exp`]) instead of by the platform's libm,
//! whose last bits differ between systems.
//!
//! # Ticks and lots
//!
//! Prices are rounded to a fixed tick per symbol, about six significant
//! digits at the base price (0.1 for BTCUSDT, 0.01 for ETHUSDT), like a real
//! exchange's tick size. Volumes are counted in whole lots (0.001 BTC, …) as
//! integers and converted once, so a volume is a clean decimal and summing
//! sub-steps in any grouping gives the same number.
//!
//! # Candles
//!
//! A candle of interval `iv` evolves in [`STEPS_PER_CANDLE`] sub-steps of
//! `iv / 60` (one second for `1m`). At step `s` its close is the price at
//! `open_time + s·iv/60`, its high and low span the prices at sub-steps
//! `0..=s`, and its volume sums the hashed volumes of sub-steps `1..=s`.
//! Consecutive candles are continuous because both read the same price at
//! their common boundary.

use ohlcv_domain::{Candle, Interval, SeriesKey, Symbol};

/// Sub-steps in one candle: a candle at step 60 is final.
///
/// Sixty makes a `1m` candle tick once a second, like a busy market, and
/// divides every supported interval into whole seconds.
pub const STEPS_PER_CANDLE: u32 = 60;

/// Octaves of the noise: the largest spans `2^27` s, about four years, so
/// the path keeps wandering over any history a user would backfill.
const OCTAVES: usize = 28;

/// Per-octave amplitude unit, in log-price per square-root second: about
/// 1e-4 per second is a 60 % annualised volatility, typical of crypto.
const SIGMA: f64 = 1.0e-4;

/// Largest deviation of the log-price from the base price; squashing
/// smoothly into this keeps prices finite, positive and plausible.
const MAX_LOG_DEVIATION: f64 = 2.5;

/// Times are clamped to `±2^62` ms (146 million years) so that adding an
/// octave's offset can never overflow.
const TIME_LIMIT_MS: i64 = 1 << 62;

/// `1 / (1000 · 2^k)`: the reciprocal of each octave's spacing in ms,
/// folded at compile time (IEEE-exact, hence the same everywhere).
const INV_SPACING_MS: [f64; OCTAVES] = {
    let mut inv = [0.0; OCTAVES];
    let mut k = 0;
    while k < OCTAVES {
        inv[k] = 1.0 / (1000_u64 << k) as f64;
        k += 1;
    }
    inv
};

/// The golden-ratio increment of `splitmix64`.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Exact powers of ten, for rounding to decimal ticks and lots.
const POW10: [f64; 13] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12,
];

/// Plausible markets for the symbols the simulator lists: base price (USDT)
/// and turnover (USDT per second, roughly a day's volume / 86,400).
/// Any other symbol gets hashed values, see [`Market::new`].
pub(super) const LISTED: [(&str, f64, f64); 20] = [
    ("BTCUSDT", 60_000.0, 170_000.0),
    ("ETHUSDT", 3_000.0, 90_000.0),
    ("SOLUSDT", 150.0, 30_000.0),
    ("BNBUSDT", 580.0, 8_000.0),
    ("XRPUSDT", 0.6, 15_000.0),
    ("DOGEUSDT", 0.15, 12_000.0),
    ("ADAUSDT", 0.45, 4_000.0),
    ("AVAXUSDT", 30.0, 4_000.0),
    ("LINKUSDT", 15.0, 4_000.0),
    ("DOTUSDT", 6.5, 2_000.0),
    ("LTCUSDT", 80.0, 3_000.0),
    ("TRXUSDT", 0.12, 1_500.0),
    ("BCHUSDT", 400.0, 2_500.0),
    ("NEARUSDT", 5.0, 2_500.0),
    ("ATOMUSDT", 7.0, 1_500.0),
    ("UNIUSDT", 8.0, 1_500.0),
    ("APTUSDT", 9.0, 2_000.0),
    ("ARBUSDT", 0.9, 2_500.0),
    ("OPUSDT", 1.8, 2_000.0),
    ("SUIUSDT", 1.2, 6_000.0),
];

/// The `splitmix64` finaliser: a fast, well-mixed, portable 64-bit hash.
const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of the symbol text, the symbol's identity in every hash.
fn symbol_hash(symbol: &Symbol) -> u64 {
    symbol.as_str().bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A hash mapped to `[0, 1)` with 53 bits of precision.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `1 / i`, for the Taylor series of [`exp`].
const INV_FACTORS: [f64; 14] = {
    let mut inv = [0.0; 14];
    let mut i = 1;
    while i < 14 {
        inv[i] = 1.0 / i as f64;
        i += 1;
    }
    inv
};

/// `e^x` from basic operations only, so that it is bit-identical on every
/// platform: Cody–Waite reduction to `r` in `±ln2/2`, a degree-13 Taylor
/// series (truncation error below 1e-17), and an exact power of two. Only
/// called with `|x| < 10`, far from overflow.
fn exp(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let n = (x * std::f64::consts::LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0;
    for i in (1..=13).rev() {
        p = 1.0 + r * p * INV_FACTORS[i];
    }
    // |n| < 15 here, so the biased exponent is a normal one.
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    p * two_n
}

/// [`exp`] of each of `xs`, bit for bit, with the lanes interleaved so
/// their Horner chains run side by side.
fn exp_lanes<const N: usize>(xs: [f64; N]) -> [f64; N] {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let mut n = [0.0_f64; N];
    let mut r = [0.0_f64; N];
    for i in 0..N {
        n[i] = (xs[i] * std::f64::consts::LOG2_E).round();
        r[i] = (xs[i] - n[i] * LN2_HI) - n[i] * LN2_LO;
    }
    let mut p = [1.0_f64; N];
    for inv in INV_FACTORS[1..=13].iter().rev() {
        for i in 0..N {
            p[i] = 1.0 + r[i] * p[i] * inv;
        }
    }
    let mut out = [0.0_f64; N];
    for i in 0..N {
        // |n| < 15 here, so the biased exponent is a normal one.
        let two_n = f64::from_bits(((n[i] as i64 + 1023) as u64) << 52);
        out[i] = p[i] * two_n;
    }
    out
}

/// `floor(log10(x))` for `x > 0`, clamped to `-12..=12`; found by
/// comparisons with exact powers of ten (no `log10`) to stay portable.
fn magnitude(x: f64) -> i32 {
    let mut magnitude: i32 = 0;
    if x >= 1.0 {
        while magnitude < 12 && x >= POW10[(magnitude + 1) as usize] {
            magnitude += 1;
        }
    } else {
        while magnitude > -12 && x < 1.0 / POW10[(-magnitude) as usize] {
            magnitude -= 1;
        }
    }
    magnitude
}

/// Everything about one `(seed, symbol)` market that does not depend on
/// time, computed once per series instead of once per price.
#[derive(Debug, Clone)]
pub(super) struct Market {
    /// Hash key of each octave's lattice.
    octave_keys: [u64; OCTAVES],
    /// Offset of each octave's lattice in whole seconds, so lattice points
    /// of different octaves do not all coincide at the epoch.
    offsets: [i64; OCTAVES],
    /// Weight of each octave in log-price.
    amplitudes: [f64; OCTAVES],
    /// Per-sub-step volatility unit, to relate volume to price moves.
    sigma: f64,
    /// The price around which the path wanders.
    base: f64,
    /// `10^decimals` of the price tick.
    price_scale: f64,
    /// Hash key of sub-step volumes.
    volume_key: u64,
    /// Typical traded quantity per second, in base-asset units.
    units_per_second: f64,
    /// `10^decimals` of the quantity lot.
    lot_scale: f64,
}

impl Market {
    /// The market of `symbol` under `seed`. Base price and turnover come
    /// from [`LISTED`], or for any other symbol from its hash (base
    /// log-uniform in 0.01..1000 USDT, turnover in 500..5000 USDT/s); they
    /// depend on the symbol only, the path on the seed too.
    pub(super) fn new(seed: u64, symbol: &Symbol) -> Self {
        let sym = symbol_hash(symbol);
        let (base, turnover) = LISTED
            .iter()
            .find(|(s, _, _)| *s == symbol.as_str())
            .map(|&(_, base, turnover)| (base, turnover))
            .unwrap_or_else(|| {
                let u = unit(splitmix64(sym ^ 0xB45E));
                let v = unit(splitmix64(sym ^ 0x7A11));
                let base = exp(std::f64::consts::LN_10 * (-2.0 + 5.0 * u));
                let turnover = 500.0 * exp(std::f64::consts::LN_10 * v);
                (base, turnover)
            });
        // Volatility varies per symbol (0.7x to 1.6x) but not per seed.
        let sigma = SIGMA * (0.7 + 0.9 * unit(splitmix64(sym ^ 0x5167)));
        let key = splitmix64(seed ^ splitmix64(sym));
        // Six significant digits of price at the base (tick 0.1 for BTC,
        // 0.01 for ETH); lots from 1 (cheap coins) to 0.001 (BTC, ETH).
        let magnitude = magnitude(base);
        let mut octave_keys = [0; OCTAVES];
        let mut offsets = [0; OCTAVES];
        let mut amplitudes = [0.0; OCTAVES];
        for k in 0..OCTAVES {
            octave_keys[k] = splitmix64(key ^ (k as u64 + 1).wrapping_mul(GOLDEN));
            offsets[k] = (splitmix64(octave_keys[k]) % (1_u64 << k)) as i64;
            // sigma * sqrt(2^k), exactly: 2^(k/2), times sqrt(2) for odd k.
            let mut amplitude = sigma * (1_u64 << (k / 2)) as f64;
            if k % 2 == 1 {
                amplitude *= std::f64::consts::SQRT_2;
            }
            amplitudes[k] = amplitude;
        }
        Market {
            octave_keys,
            offsets,
            amplitudes,
            sigma,
            base,
            price_scale: POW10[(5 - magnitude).clamp(0, 12) as usize],
            volume_key: splitmix64(key ^ 0x766F_6C75_6D65),
            units_per_second: turnover / base,
            lot_scale: POW10[(magnitude - 1).clamp(0, 3) as usize],
        }
    }
}

/// A cursor over one market's path: caches each octave's current lattice
/// cell, so evaluating increasing times (a candle's sub-steps, a backfill)
/// re-hashes only the octaves whose cell changed. The cache never changes a
/// result, only its cost.
#[derive(Debug, Clone)]
pub(super) struct PricePath {
    market: Market,
    /// Per octave: lattice index, value at it and at the next index.
    cells: [(i64, f64, f64); OCTAVES],
}

impl PricePath {
    /// A cursor with an empty cache.
    pub(super) fn new(market: Market) -> Self {
        PricePath {
            market,
            cells: [(i64::MIN, 0.0, 0.0); OCTAVES],
        }
    }

    fn lattice(&self, k: usize, index: i64) -> f64 {
        let h = splitmix64(self.market.octave_keys[k] ^ (index as u64).wrapping_mul(GOLDEN));
        2.0 * unit(h) - 1.0
    }

    /// The traded price at `time_ms`, rounded to the market's tick.
    pub(super) fn price(&mut self, time_ms: i64) -> f64 {
        let t = time_ms.clamp(-TIME_LIMIT_MS, TIME_LIMIT_MS);
        // Lattice spacings are 2^k whole seconds: split the time once into
        // seconds and milliseconds, then each octave's cell is a shift of
        // the seconds (no division per octave, which dominated the cost).
        let seconds = t.div_euclid(1000);
        let millis = t.rem_euclid(1000) as f64;
        let mut x = 0.0;
        for (k, inv_spacing_ms) in INV_SPACING_MS.iter().enumerate() {
            let shifted = seconds + self.market.offsets[k];
            let index = shifted >> k;
            if self.cells[k].0 != index {
                self.cells[k] = (index, self.lattice(k, index), self.lattice(k, index + 1));
            }
            let (_, v0, v1) = self.cells[k];
            // Position within the cell, in [0, 1).
            let within_ms = (shifted & ((1 << k) - 1)) as f64 * 1000.0 + millis;
            let f = within_ms * inv_spacing_ms;
            let w = f * f * (3.0 - 2.0 * f);
            x += self.market.amplitudes[k] * (v0 + (v1 - v0) * w);
        }
        let deviation = x / (1.0 + x.abs() / MAX_LOG_DEVIATION);
        let raw = self.market.base * exp(deviation);
        let scale = self.market.price_scale;
        (raw * scale).round().max(1.0) / scale
    }

    /// Octave `k`'s cell at lattice `index`, from the cache when it holds
    /// it.
    fn cell(&mut self, k: usize, index: i64) -> (i64, f64, f64) {
        if self.cells[k].0 != index {
            self.cells[k] = (index, self.lattice(k, index), self.lattice(k, index + 1));
        }
        self.cells[k]
    }

    /// [`price`](Self::price) at each of `times`, bit for bit, computed
    /// in lanes: the same operations in the same order per time, but the
    /// `N` times interleaved, so the CPU overlaps `N` independent chains
    /// of additions instead of waiting on one (a backfill of a million
    /// candles spent most of its time in those chains).
    pub(super) fn prices<const N: usize>(&mut self, times: [i64; N]) -> [f64; N] {
        let mut seconds = [0_i64; N];
        let mut millis = [0_i64; N];
        for i in 0..N {
            let t = times[i].clamp(-TIME_LIMIT_MS, TIME_LIMIT_MS);
            seconds[i] = t.div_euclid(1000);
            millis[i] = t.rem_euclid(1000);
        }
        let mut x = [0.0_f64; N];
        for (k, inv_spacing_ms) in INV_SPACING_MS.iter().enumerate() {
            let offset = self.market.offsets[k];
            let amplitude = self.market.amplitudes[k];
            let mut shifted = [0_i64; N];
            let mut v0 = [0.0_f64; N];
            let mut v1 = [0.0_f64; N];
            for i in 0..N {
                shifted[i] = seconds[i] + offset;
            }
            // Lattice values first (in the upper octaves all lanes share
            // one cell), so the arithmetic below is branch-free lanes.
            let first = shifted[0] >> k;
            if shifted.iter().all(|s| s >> k == first) {
                let (_, a, b) = self.cell(k, first);
                v0 = [a; N];
                v1 = [b; N];
            } else {
                for i in 0..N {
                    (_, v0[i], v1[i]) = self.cell(k, shifted[i] >> k);
                }
            }
            for i in 0..N {
                // An integer below 2^40 either way: computed in integers
                // and converted once, it is exactly the value `price`
                // gets in floating point.
                let within_ms = ((shifted[i] & ((1 << k) - 1)) * 1000 + millis[i]) as f64;
                let f = within_ms * inv_spacing_ms;
                let w = f * f * (3.0 - 2.0 * f);
                x[i] += amplitude * (v0[i] + (v1[i] - v0[i]) * w);
            }
        }
        let mut deviation = [0.0_f64; N];
        for i in 0..N {
            deviation[i] = x[i] / (1.0 + x[i].abs() / MAX_LOG_DEVIATION);
        }
        let growth = exp_lanes(deviation);
        let scale = self.market.price_scale;
        let mut out = [0.0_f64; N];
        for i in 0..N {
            let raw = self.market.base * growth[i];
            out[i] = (raw * scale).round().max(1.0) / scale;
        }
        out
    }

    /// Volume of the sub-step of `interval` that ends at `end_ms`, in lots:
    /// hashed, at least one lot, larger when the price moved more.
    fn volume_lots(&self, interval: Interval, end_ms: i64, from: f64, to: f64) -> u64 {
        let m = &self.market;
        let dt = (interval.duration_ms() / i64::from(STEPS_PER_CANDLE)) as f64 / 1000.0;
        let key = splitmix64(m.volume_key ^ interval.duration_ms() as u64);
        let u = unit(splitmix64(key ^ (end_ms as u64).wrapping_mul(GOLDEN)));
        // The move in units of its typical size: busy markets move more.
        let z = ((to - from).abs() / from) / (m.sigma * dt.sqrt());
        let factor = 0.4 + u + 0.3 * z.min(5.0);
        let lots = (m.units_per_second * dt * factor * m.lot_scale).floor();
        (lots as u64).max(1)
    }
}

/// Sub-step prices [`CandleBuilder::advance`] computes together: six
/// lanes hide most of the latency of one price's chain of additions on
/// common CPUs, and 60 steps are 10 groups of six.
const PRICE_LANES: u32 = 6;

/// A candle being built step by step; extending it to a later step gives
/// exactly what building it from scratch would (same operations, same
/// order), which lets the live stream update candles incrementally.
#[derive(Debug, Clone)]
pub(super) struct CandleBuilder {
    key: SeriesKey,
    open_time: i64,
    step: u32,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    lots: u64,
}

impl CandleBuilder {
    /// The candle of `key` opening at `open_time` (aligned down), at step 0.
    pub(super) fn new(path: &mut PricePath, key: &SeriesKey, open_time: i64) -> Self {
        let open_time = key
            .interval
            .align(open_time.clamp(-TIME_LIMIT_MS, TIME_LIMIT_MS));
        let open = path.price(open_time);
        CandleBuilder {
            key: key.clone(),
            open_time,
            step: 0,
            open,
            high: open,
            low: open,
            close: open,
            lots: 0,
        }
    }

    /// Open time of the candle.
    pub(super) fn open_time(&self) -> i64 {
        self.open_time
    }

    /// Current step.
    pub(super) fn step(&self) -> u32 {
        self.step
    }

    /// Advances to `step` (clamped to 60); a lower step leaves it as is.
    pub(super) fn advance(&mut self, path: &mut PricePath, step: u32) {
        let step = step.min(STEPS_PER_CANDLE);
        let sub_step_ms = self.key.interval.duration_ms() / i64::from(STEPS_PER_CANDLE);
        let open_time = self.open_time;
        let at = move |s: u32| open_time + i64::from(s) * sub_step_ms;
        // Several sub-steps' prices at a time (see `PricePath::prices`), then
        // one at a time for the rest: same prices, same order of updates.
        while self.step + PRICE_LANES <= step {
            let first = self.step + 1;
            let times: [i64; PRICE_LANES as usize] = std::array::from_fn(|i| at(first + i as u32));
            let prices = path.prices(times);
            for (time, price) in times.into_iter().zip(prices) {
                self.step_to(path, time, price);
            }
        }
        while self.step < step {
            let time = at(self.step + 1);
            let price = path.price(time);
            self.step_to(path, time, price);
        }
    }

    /// Moves one sub-step on, to `price` at `time_ms`.
    fn step_to(&mut self, path: &PricePath, time_ms: i64, price: f64) {
        self.step += 1;
        self.lots += path.volume_lots(self.key.interval, time_ms, self.close, price);
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
    }

    /// The candle as the exchange reports it at the current step.
    pub(super) fn candle(&self, path: &PricePath) -> Candle {
        Candle {
            key: self.key.clone(),
            open_time: self.open_time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.lots as f64 / path.market.lot_scale,
            closed: self.step == STEPS_PER_CANDLE,
        }
    }
}

/// The simulated traded price of `symbol` at `time_ms` under `seed`.
///
/// Public so that tests and tools can plot or check the path; candles are
/// built from it at sub-step boundaries.
pub fn price_at(seed: u64, symbol: &Symbol, time_ms: i64) -> f64 {
    PricePath::new(Market::new(seed, symbol)).price(time_ms)
}

/// The candle of `key` opening at `open_time`, as it stands after `step`
/// of its [`STEPS_PER_CANDLE`] sub-steps (`closed` at step 60).
///
/// The single definition of every simulated candle: backfill and the live
/// stream both produce exactly this, and end-to-end tests recompute the
/// expected series with it. `open_time` is aligned down to the interval
/// (and clamped to ±2^62 ms, 146 million years) and `step` clamped to 60,
/// so the result always passes [`Candle::validate`].
pub fn candle_at(seed: u64, key: &SeriesKey, open_time: i64, step: u32) -> Candle {
    let mut path = PricePath::new(Market::new(seed, &key.symbol));
    let mut builder = CandleBuilder::new(&mut path, key, open_time);
    builder.advance(&mut path, step);
    builder.candle(&path)
}

/// The closed (final) candle of `key` opening at `open_time`: what the
/// exchange reports once the interval has ended.
pub fn final_candle(seed: u64, key: &SeriesKey, open_time: i64) -> Candle {
    candle_at(seed, key, open_time, STEPS_PER_CANDLE)
}

/// The step a candle of `interval` opening at `open_time` has reached at
/// wall time `now_ms`: `floor(elapsed · 60 / duration)`, so `0..=59` while
/// the candle is open and 60 once `now_ms >= open_time + duration`. A
/// candle that has not opened yet is at step 0.
///
/// Public so that tests can tell which candle state the exchange served at
/// a given instant.
pub fn step_at(interval: Interval, open_time: i64, now_ms: i64) -> u32 {
    let duration = i128::from(interval.duration_ms());
    let elapsed = i128::from(now_ms) - i128::from(open_time);
    if elapsed <= 0 {
        0
    } else if elapsed >= duration {
        STEPS_PER_CANDLE
    } else {
        // elapsed < duration, so the quotient is below 60.
        (elapsed * i128::from(STEPS_PER_CANDLE) / duration) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::ExchangeId;

    /// 2024-01-03T10:17:00Z
    const T0: i64 = 1_704_277_020_000;

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).unwrap(),
            interval,
        )
    }

    #[test]
    fn exp_is_accurate_where_it_is_used() {
        for i in -400..=400 {
            let x = f64::from(i) / 100.0;
            let (ours, libm) = (exp(x), x.exp());
            assert!(
                ((ours - libm) / libm).abs() < 1e-14,
                "exp({x}): {ours} vs {libm}"
            );
        }
    }

    #[test]
    fn same_inputs_give_the_same_candle_and_seeds_differ() {
        let k = key("BTCUSDT", Interval::M1);
        for step in [0, 1, 30, 60] {
            assert_eq!(candle_at(42, &k, T0, step), candle_at(42, &k, T0, step));
        }
        assert_ne!(final_candle(42, &k, T0), final_candle(43, &k, T0));
        assert_ne!(price_at(1, &k.symbol, T0), price_at(2, &k.symbol, T0));
        // Pinned values, the same on every machine: a change here changes
        // every user's simulated history, which must be deliberate.
        let pinned = final_candle(42, &k, T0);
        assert_eq!(
            (
                pinned.open,
                pinned.high,
                pinned.low,
                pinned.close,
                pinned.volume
            ),
            (59466.2, 59487.6, 59429.1, 59435.8, 191.361)
        );
        let hashed = final_candle(42, &key("ZZZUSDT", Interval::M1), T0);
        assert_eq!(
            (
                hashed.open,
                hashed.high,
                hashed.low,
                hashed.close,
                hashed.volume
            ),
            (0.0044423, 0.0044454, 0.0044407, 0.004443, 8972871.0)
        );
    }

    #[test]
    fn base_prices_are_plausible() {
        let btc = price_at(7, &Symbol::new("BTCUSDT").unwrap(), T0);
        let eth = price_at(7, &Symbol::new("ETHUSDT").unwrap(), T0);
        assert!((5_000.0..=720_000.0).contains(&btc), "{btc}");
        assert!((250.0..=36_000.0).contains(&eth), "{eth}");
        // BTC's tick is 0.1: the price is a whole number of ticks.
        assert_eq!((btc * 10.0).round() / 10.0, btc);
        let other = price_at(7, &Symbol::new("ZZZUSDT").unwrap(), T0);
        assert!(other > 0.0 && other.is_finite());
    }

    #[test]
    fn consecutive_candles_are_continuous() {
        for (symbol, interval) in [
            ("BTCUSDT", Interval::M1),
            ("DOGEUSDT", Interval::M5),
            ("QQQUSDT", Interval::H4),
            ("ETHUSDT", Interval::W1),
        ] {
            let k = key(symbol, interval);
            let mut open_time = interval.align(T0);
            let mut previous = final_candle(9, &k, open_time);
            for _ in 0..50 {
                open_time += interval.duration_ms();
                let next = final_candle(9, &k, open_time);
                assert_eq!(next.open, previous.close, "{k} at {open_time}");
                previous = next;
            }
        }
    }

    #[test]
    fn every_candle_validates_over_random_keys_and_times() {
        let mut rng = fastrand::Rng::with_seed(2024);
        for _ in 0..3_000 {
            let len = rng.usize(2..=12);
            let symbol: String = (0..len)
                .map(|_| {
                    let c = rng.u8(0..36);
                    char::from(if c < 26 { b'A' + c } else { b'0' + c - 26 })
                })
                .collect();
            let interval = Interval::ALL[rng.usize(..Interval::ALL.len())];
            // From before the epoch to far in the future, plus extremes.
            let time = match rng.u8(0..20) {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => rng.i64(-1_000_000_000_000_000..=1_000_000_000_000_000),
            };
            let k = key(&symbol, interval);
            let c = candle_at(rng.u64(..), &k, time, rng.u32(0..=70));
            assert_eq!(c.validate(), Ok(()), "{c:?}");
            assert!(c.low > 0.0, "{c:?}");
        }
    }

    #[test]
    fn volume_grows_with_step_and_high_low_widen() {
        let k = key("SOLUSDT", Interval::M15);
        let mut previous = candle_at(5, &k, T0, 0);
        assert_eq!(previous.volume, 0.0);
        assert!(!previous.closed);
        for step in 1..=STEPS_PER_CANDLE {
            let c = candle_at(5, &k, T0, step);
            assert!(c.volume > previous.volume, "step {step}");
            assert!(c.high >= previous.high && c.low <= previous.low);
            assert_eq!(c.open, previous.open);
            assert_eq!(c.closed, step == STEPS_PER_CANDLE);
            previous = c;
        }
    }

    #[test]
    fn incremental_building_matches_building_from_scratch() {
        let k = key("ETHUSDT", Interval::M3);
        let open_time = Interval::M3.align(T0);
        let mut path = PricePath::new(Market::new(11, &k.symbol));
        let mut builder = CandleBuilder::new(&mut path, &k, open_time);
        for step in [0, 1, 2, 7, 7, 30, 59, 60] {
            builder.advance(&mut path, step);
            assert_eq!(builder.candle(&path), candle_at(11, &k, open_time, step));
        }
    }

    #[test]
    fn prices_in_lanes_equal_prices_one_by_one_bit_for_bit() {
        let mut rng = fastrand::Rng::with_seed(7);
        for symbol in ["BTCUSDT", "XRPUSDT", "ZZZ9USDT"] {
            let market = Market::new(42, &Symbol::new(symbol).unwrap());
            let mut lanes = PricePath::new(market.clone());
            let mut single = PricePath::new(market);
            for _ in 0..2_000 {
                // Runs of close times (the cache hits), jumps, the edges.
                let base = match rng.u8(0..10) {
                    0 => rng.i64(..),
                    1 => -rng.i64(0..1 << 40),
                    _ => T0 + rng.i64(-(1 << 36)..(1 << 36)),
                };
                let step = [1, 999, 1_000, 60_000, 720_000][rng.usize(0..5)];
                let times: [i64; 4] = std::array::from_fn(|i| base.saturating_add(i as i64 * step));
                let got = lanes.prices(times);
                for (t, price) in times.into_iter().zip(got) {
                    assert_eq!(
                        price.to_bits(),
                        single.price(t).to_bits(),
                        "{symbol} at {t}"
                    );
                }
            }
        }
        for x in [-9.9, -1.0, -1e-9, 0.0, 1e-9, 0.3, 2.5, 9.9] {
            assert_eq!(exp_lanes([x])[0].to_bits(), exp(x).to_bits(), "{x}");
        }
    }

    #[test]
    fn step_at_maps_wall_time_to_steps() {
        let iv = Interval::M1;
        assert_eq!(step_at(iv, T0, T0 - 1), 0);
        assert_eq!(step_at(iv, T0, T0), 0);
        assert_eq!(step_at(iv, T0, T0 + 999), 0);
        assert_eq!(step_at(iv, T0, T0 + 1_000), 1);
        assert_eq!(step_at(iv, T0, T0 + 59_999), 59);
        assert_eq!(step_at(iv, T0, T0 + 60_000), 60);
        assert_eq!(step_at(iv, T0, i64::MAX), 60);
        assert_eq!(step_at(iv, i64::MAX, i64::MIN), 0);
        let w = Interval::W1;
        let open = w.align(T0);
        assert_eq!(step_at(w, open, open + w.duration_ms() / 60 - 1), 0);
        assert_eq!(step_at(w, open, open + w.duration_ms() / 60), 1);
        assert_eq!(step_at(w, open, open + w.duration_ms() - 1), 59);
    }

    #[test]
    fn candle_at_aligns_and_clamps_its_arguments() {
        let k = key("BTCUSDT", Interval::M1);
        assert_eq!(candle_at(1, &k, T0 + 12_345, 70), final_candle(1, &k, T0));
    }

    #[test]
    fn the_path_moves_like_a_market() {
        // One day of one-second prices: it moves most seconds, and the
        // day's range is a few percent, not zero and not a crash.
        let symbol = Symbol::new("BTCUSDT").unwrap();
        let mut path = PricePath::new(Market::new(42, &symbol));
        let prices: Vec<f64> = (0..86_400).map(|s| path.price(T0 + s * 1_000)).collect();
        let moves = prices.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(moves > 80_000, "{moves}");
        let (lo, hi) = prices
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        let range = hi / lo - 1.0;
        assert!((0.002..0.5).contains(&range), "{range}");
    }
}
