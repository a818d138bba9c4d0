//! The simulated exchange: a deterministic in-process market, for trying the
//! collector out without a network and for testing it end to end.
//!
//! It owns three things:
//! - the market model ([`price_at`], [`candle_at`], [`final_candle`],
//!   [`step_at`]): pure functions of a seed, a series and a time, so tests
//!   can recompute exactly what the exchange served (see `path.rs`);
//! - the [`MarketSource`] adapter, [`SimulatedExchange`]: symbols, backfill
//!   and a paced live stream with a closed final candle at each boundary,
//!   like Binance's kline stream (see `stream.rs`);
//! - fault injection ([`FaultConfig`](ohlcv_domain::config::FaultConfig)):
//!   a panic, a dropped stream, a silent stream or a blocked thread after a
//!   number of updates, each once per instance, to exercise the supervisor
//!   and the datasource's recovery.

mod path;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use ohlcv_domain::config::{SimulationConfig, MAX_SIMULATED_UPDATES_PER_SECOND};
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

pub use path::{candle_at, final_candle, price_at, step_at, STEPS_PER_CANDLE};

use path::{CandleBuilder, Market, PricePath, LISTED};
use stream::{tick_period, Clock, Faults, LiveStream, TokioClock};

use crate::source::{CandleStream, ExchangeError, LiveEvent, MarketSource};

/// Most candles one [`SimulatedExchange::backfill`] call returns; a larger
/// range is refused, so a bad request cannot allocate without bound
/// (100,000 candles are about 10 MB). Callers page larger ranges.
pub const MAX_BACKFILL_CANDLES: i64 = 100_000;

/// Candles of one backfill from which the work is split across threads
/// (one per core, at most [`MAX_BACKFILL_THREADS`]): a chunk of 10,000
/// candles costs some 50 ms of CPU, a bootstrap of a million several
/// seconds on one core.
const PARALLEL_BACKFILL_CANDLES: i64 = 2_000;

/// Most threads one backfill is split across.
const MAX_BACKFILL_THREADS: usize = 4;

/// Slowest pace the stream runs at, in updates per second per series: a
/// configured rate below it (or not a positive number) is raised to it, so
/// the pacing timer's period stays reasonable (here about 17 minutes).
pub const MIN_UPDATES_PER_SECOND: f64 = 0.001;

/// Shortest [`MarketSource::max_silence`]: even at high rates, a stream is
/// not declared dead over a scheduling hiccup of the consuming thread.
const MIN_SILENCE: Duration = Duration::from_secs(2);

/// Missed updates tolerated before a stream counts as silent.
const SILENT_UPDATES: f64 = 10.0;

/// The simulated exchange ([`ExchangeId::Simulated`]).
///
/// Keep one instance for the life of the process (the supervisor does): its
/// fault counters are shared by every stream it opens (and by its clones),
/// so each configured fault fires once even though the datasource
/// reconnects after it.
#[derive(Debug, Clone)]
pub struct SimulatedExchange {
    seed: u64,
    rate: f64,
    faults: Arc<Faults>,
}

impl SimulatedExchange {
    /// An exchange behaving as `config` says. `updates_per_second` is
    /// clamped to `MIN_UPDATES_PER_SECOND..=MAX_SIMULATED_UPDATES_PER_SECOND`
    /// (a non-number becomes 1) because config validation may have been
    /// bypassed by a caller building the config in code.
    pub fn new(config: SimulationConfig) -> Self {
        let rate = if config.updates_per_second.is_nan() {
            1.0
        } else {
            config
                .updates_per_second
                .clamp(MIN_UPDATES_PER_SECOND, MAX_SIMULATED_UPDATES_PER_SECOND)
        };
        SimulatedExchange {
            seed: config.seed,
            rate,
            faults: Arc::new(Faults::new(config.faults)),
        }
    }

    /// Live updates delivered so far by all streams of this instance: the
    /// count the fault thresholds refer to.
    pub fn updates_delivered(&self) -> u64 {
        self.faults.delivered()
    }

    /// [`MarketSource::backfill`] as seen at wall time `now`.
    fn candles_until(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let (first, count) = backfill_range(symbol, interval, from, to, now)?;
        let key = SeriesKey::new(ExchangeId::Simulated, symbol.clone(), interval);
        let market = Market::new(self.seed, symbol);
        // One cursor per run of candles: consecutive candles share most
        // lattice cells, which makes a long backfill cheap. The cursor's
        // cache never changes a price, so runs computed apart are the same
        // candles.
        let run = |range: std::ops::Range<i64>| -> Vec<Candle> {
            let mut path = PricePath::new(market.clone());
            range
                .map(|i| {
                    let open = first + i * interval.duration_ms();
                    let mut builder = CandleBuilder::new(&mut path, &key, open);
                    builder.advance(&mut path, step_at(interval, open, now));
                    builder.candle(&path)
                })
                .collect()
        };
        let threads = if count >= PARALLEL_BACKFILL_CANDLES {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_BACKFILL_THREADS)
        } else {
            1
        };
        if threads <= 1 {
            return Ok(run(0..count));
        }
        let per_thread = (count + threads as i64 - 1) / threads as i64;
        let candles = std::thread::scope(|scope| {
            let run = &run;
            let helpers: Vec<_> = (1..threads as i64)
                .map(|part| {
                    let range =
                        (part * per_thread).min(count)..((part + 1) * per_thread).min(count);
                    let inline = range.clone();
                    // A thread that cannot be created computes here instead.
                    std::thread::Builder::new()
                        .name("simulated-history".into())
                        .spawn_scoped(scope, move || run(range))
                        .map_err(|_| run(inline))
                })
                .collect();
            let mut candles = run(0..per_thread.min(count));
            for helper in helpers {
                match helper {
                    Ok(handle) => match handle.join() {
                        Ok(part) => candles.extend(part),
                        // A panic in the model is a bug: surface it as
                        // the single-threaded computation would.
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    Err(part) => candles.extend(part),
                }
            }
            candles
        });
        Ok(candles)
    }

    /// A live stream of `subscriptions` driven by `clock`.
    fn open_stream<C: Clock>(
        &self,
        subscriptions: &[SeriesKey],
        clock: C,
    ) -> Result<LiveStream<C>, ExchangeError> {
        let mut keys: Vec<SeriesKey> = Vec::with_capacity(subscriptions.len());
        for key in subscriptions {
            if key.exchange != ExchangeId::Simulated {
                return Err(ExchangeError::Rejected(format!(
                    "cannot subscribe to {key} on the {} exchange",
                    ExchangeId::Simulated
                )));
            }
            // A duplicate would only double its updates; serve it once.
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        Ok(LiveStream::new(
            self.seed,
            self.rate,
            keys,
            Arc::clone(&self.faults),
            clock,
        ))
    }
}

/// The candles a backfill from `from` to `to` returns at wall time `now`:
/// the first open time and how many (possibly none).
///
/// # Errors
/// [`ExchangeError::Rejected`] when `from > to` or the range holds more than
/// [`MAX_BACKFILL_CANDLES`] candles.
fn backfill_range(
    symbol: &Symbol,
    interval: Interval,
    from: i64,
    to: i64,
    now: i64,
) -> Result<(i64, i64), ExchangeError> {
    if from > to {
        return Err(ExchangeError::Rejected(format!(
            "backfill of {symbol} {interval}: from {from} is after to {to}"
        )));
    }
    // The simulated market opens at the Unix epoch: earlier candles do not
    // exist, as a real market returns nothing before its listing.
    let first = interval.align(from.max(0));
    let last = interval.align(to.min(now));
    if last < first {
        return Ok((first, 0));
    }
    let count = (last - first) / interval.duration_ms() + 1;
    if count > MAX_BACKFILL_CANDLES {
        return Err(ExchangeError::Rejected(format!(
            "backfill of {symbol} {interval} from {from} to {to} spans {count} candles; \
             at most {MAX_BACKFILL_CANDLES} per request"
        )));
    }
    Ok((first, count))
}

#[async_trait]
impl MarketSource for SimulatedExchange {
    fn id(&self) -> ExchangeId {
        ExchangeId::Simulated
    }

    /// `max(2 s, 10 / updates_per_second)`: ten missed updates in a row,
    /// and never less than a scheduling hiccup.
    fn max_silence(&self) -> Duration {
        Duration::from_secs_f64(SILENT_UPDATES / self.rate).max(MIN_SILENCE)
    }

    /// Twenty common USDT perpetuals. Backfill and stream serve any valid
    /// symbol, listed or not: which ones to collect is the user's choice.
    async fn load_symbols(&self) -> Result<Vec<Symbol>, ExchangeError> {
        LISTED
            .iter()
            .map(|(name, _, _)| {
                Symbol::new(name).map_err(|e| ExchangeError::Decode {
                    reason: e.to_string(),
                    raw: (*name).to_owned(),
                })
            })
            .collect()
    }

    /// Every candle whose aligned open time lies in `align(from)..=to` and
    /// that has opened by now, oldest first: closed ones final, the forming
    /// one at its current step. Nothing exists before the Unix epoch.
    ///
    ///
    /// A large range is computed on several threads at once (scoped: they
    /// are gone when the call returns), so a bootstrap of a million candles
    /// uses every core.
    ///
    /// # Errors
    /// [`ExchangeError::Rejected`] when `from > to`, or when the range holds
    /// more than [`MAX_BACKFILL_CANDLES`] candles.
    async fn backfill(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        self.candles_until(symbol, interval, from, to, ohlcv_domain::time::now_ms())
    }

    /// Updates of the open candle of every series at `updates_per_second`
    /// each, and each candle once more, closed, when its interval ends.
    /// With no subscriptions the stream stays open and quiet.
    ///
    /// # Errors
    /// [`ExchangeError::Rejected`] for a series of another exchange.
    async fn stream(&self, subscriptions: &[SeriesKey]) -> Result<CandleStream, ExchangeError> {
        let clock = TokioClock::new(tick_period(self.rate));
        let stream = self.open_stream(subscriptions, clock)?;
        tracing::debug!(
            exchange = %ExchangeId::Simulated,
            series = subscriptions.len(),
            updates_per_second = self.rate,
            "simulated stream opened"
        );
        Ok(Box::pin(stream.map(|item| item.map(LiveEvent::Candle))))
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::task::noop_waker_ref;
    use futures_util::{Stream, StreamExt};

    use ohlcv_domain::config::FaultConfig;

    use super::stream::test_clock::TestClock;
    use super::*;

    /// 2024-01-03T10:17:00Z, a minute boundary.
    const T0: i64 = 1_704_277_020_000;

    fn key(symbol: &str, interval: Interval) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).unwrap(),
            interval,
        )
    }

    fn exchange(rate: f64, faults: FaultConfig) -> SimulatedExchange {
        SimulatedExchange::new(SimulationConfig {
            seed: 42,
            updates_per_second: rate,
            faults,
        })
    }

    /// Polls once with a waker nobody wakes.
    fn poll<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
        Pin::new(stream).poll_next(&mut Context::from_waker(noop_waker_ref()))
    }

    /// The next update, moving the test clock one second at a time while
    /// the stream waits for its timer.
    fn next(stream: &mut LiveStream<TestClock>, clock: &TestClock) -> Option<Candle> {
        for _ in 0..10 {
            match poll(stream) {
                Poll::Ready(item) => return item.map(|r| r.unwrap()),
                Poll::Pending => clock.advance(1_000),
            }
        }
        panic!("no update after 10 s of test time");
    }

    /// What the exchange serves for `key` at wall time `now`.
    fn expected(key: &SeriesKey, now: i64) -> Candle {
        let open = key.interval.align(now);
        candle_at(42, key, open, step_at(key.interval, open, now))
    }

    #[tokio::test]
    async fn lists_common_perpetuals_and_reports_its_id() {
        let ex = exchange(1.0, FaultConfig::default());
        let symbols = ex.load_symbols().await.unwrap();
        assert_eq!(symbols.len(), 20);
        assert_eq!(symbols[0].as_str(), "BTCUSDT");
        assert!(symbols.iter().any(|s| s.as_str() == "ETHUSDT"));
        assert_eq!(ex.id(), ExchangeId::Simulated);
    }

    #[test]
    fn max_silence_allows_ten_missed_updates_and_at_least_two_seconds() {
        assert_eq!(
            exchange(1.0, FaultConfig::default()).max_silence(),
            Duration::from_secs(10)
        );
        assert_eq!(
            exchange(0.5, FaultConfig::default()).max_silence(),
            Duration::from_secs(20)
        );
        assert_eq!(
            exchange(1_000.0, FaultConfig::default()).max_silence(),
            MIN_SILENCE
        );
        // Out-of-range rates are clamped rather than breaking the timer.
        assert_eq!(exchange(f64::NAN, FaultConfig::default()).rate, 1.0);
        assert_eq!(
            exchange(0.0, FaultConfig::default()).rate,
            MIN_UPDATES_PER_SECOND
        );
    }

    #[test]
    fn backfill_covers_the_aligned_range_up_to_the_forming_candle() {
        let ex = exchange(1.0, FaultConfig::default());
        let symbol = Symbol::new("BTCUSDT").unwrap();
        let k = key("BTCUSDT", Interval::M1);
        let now = T0 + 10 * 60_000 + 42_500;
        // `from` mid-candle aligns down; `to` beyond now stops at now.
        let candles = ex
            .candles_until(&symbol, Interval::M1, T0 + 30_000, now + 3_600_000, now)
            .unwrap();
        assert_eq!(candles.len(), 11);
        assert_eq!(candles[0].open_time, T0);
        for (i, c) in candles.iter().enumerate() {
            assert_eq!(c.open_time, T0 + i as i64 * 60_000, "oldest first, no gaps");
            assert_eq!(c.validate(), Ok(()));
        }
        for c in &candles[..10] {
            assert_eq!(c, &final_candle(42, &k, c.open_time));
        }
        let forming = &candles[10];
        assert!(!forming.closed);
        assert_eq!(forming, &candle_at(42, &k, T0 + 600_000, 42));
        assert_eq!(forming, &expected(&k, now));

        // `to` before now: all closed; `to` inside a candle includes it.
        let closed = ex
            .candles_until(&symbol, Interval::M5, T0 - 3_600_000, T0 - 1, now)
            .unwrap();
        assert_eq!(closed.len(), 13);
        assert!(closed.iter().all(|c| c.closed));
        assert_eq!(closed[12].open_time, Interval::M5.align(T0 - 1));

        // A single instant; a range entirely in the future; before 1970.
        let one = ex
            .candles_until(&symbol, Interval::M1, T0, T0, now)
            .unwrap();
        assert_eq!(one, vec![final_candle(42, &k, T0)]);
        let future = ex
            .candles_until(&symbol, Interval::M1, now + 60_000, now + 120_000, now)
            .unwrap();
        assert!(future.is_empty());
        let early = ex
            .candles_until(&symbol, Interval::H1, -7_200_000, 3_599_999, now)
            .unwrap();
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].open_time, 0);
    }

    #[test]
    fn backfill_rejects_bad_ranges_with_a_reason() {
        let ex = exchange(1.0, FaultConfig::default());
        let symbol = Symbol::new("ETHUSDT").unwrap();
        let err = ex
            .candles_until(&symbol, Interval::M1, T0, T0 - 1, T0)
            .unwrap_err();
        assert!(
            matches!(&err, ExchangeError::Rejected(m) if m.contains("after")),
            "{err}"
        );
        assert!(!err.is_retryable());

        let from = T0 - MAX_BACKFILL_CANDLES * 60_000;
        let err = ex
            .candles_until(&symbol, Interval::M1, from, T0, T0)
            .unwrap_err();
        assert!(
            matches!(&err, ExchangeError::Rejected(m) if m.contains("at most 100000")),
            "{err}"
        );
        // Exactly the cap is fine (counted, not built: slow in debug).
        let range = backfill_range(&symbol, Interval::M1, from + 60_000, T0, T0);
        assert_eq!(range.unwrap(), (from + 60_000, MAX_BACKFILL_CANDLES));
    }

    #[tokio::test]
    async fn backfill_through_the_trait_ends_at_the_forming_candle() {
        let ex = exchange(1.0, FaultConfig::default());
        let symbol = Symbol::new("SOLUSDT").unwrap();
        let now = ohlcv_domain::time::now_ms();
        let candles = ex
            .backfill(&symbol, Interval::M1, now - 3_600_000, i64::MAX)
            .await
            .unwrap();
        assert!((60..=61).contains(&candles.len()), "{}", candles.len());
        assert!(candles
            .windows(2)
            .all(|w| w[1].open_time == w[0].next_open_time()));
        assert!(!candles.last().unwrap().closed);
        assert!(candles[..candles.len() - 1].iter().all(|c| c.closed));
    }

    #[test]
    fn backfilling_ten_thousand_candles_is_quick() {
        // Measured, not asserted: wall-clock bounds make flaky tests. Run
        // with `--release --nocapture` to see the figure.
        let ex = exchange(1.0, FaultConfig::default());
        let symbol = Symbol::new("BTCUSDT").unwrap();
        let started = std::time::Instant::now();
        let candles = ex
            .candles_until(&symbol, Interval::M1, T0 - 9_999 * 60_000, T0, T0)
            .unwrap();
        eprintln!("10,000 one-minute candles in {:?}", started.elapsed());
        assert_eq!(candles.len(), 10_000);
    }

    #[test]
    fn a_backfill_split_across_threads_is_every_candle_in_order() {
        let ex = exchange(1.0, FaultConfig::default());
        let key = key("ETHUSDT", Interval::M5);
        let step = Interval::M5.duration_ms();
        // Not a multiple of the threads, ending at a forming candle.
        let count = PARALLEL_BACKFILL_CANDLES * 2 + 7;
        let now = T0 + 90_000;
        let from = Interval::M5.align(now) - (count - 1) * step;
        let candles = ex
            .candles_until(&key.symbol, Interval::M5, from, now, now)
            .unwrap();
        assert_eq!(candles.len() as i64, count);
        for (i, candle) in candles.iter().enumerate() {
            let open = from + i as i64 * step;
            assert_eq!(
                candle,
                &candle_at(42, &key, open, step_at(Interval::M5, open, now)),
                "candle {i}"
            );
        }
        assert!(!candles.last().unwrap().closed);
    }

    #[test]
    fn stream_paces_updates_at_the_configured_rate() {
        let ex = exchange(10.0, FaultConfig::default());
        let keys = [key("BTCUSDT", Interval::M1), key("ETHUSDT", Interval::M5)];
        let clock = TestClock::at(T0 + 1_000);
        let mut stream = ex.open_stream(&keys, clock.clone()).unwrap();
        let mut received = Vec::new();
        // One round at once, then one per 100 ms tick for a second.
        for tick in 0..=10 {
            if tick > 0 {
                clock.advance(100);
            }
            let now = clock.wall_ms();
            for k in &keys {
                match poll(&mut stream) {
                    Poll::Ready(Some(Ok(c))) => {
                        assert_eq!(c, expected(k, now));
                        received.push(c);
                    }
                    other => panic!("tick {tick}: expected an update, got {other:?}"),
                }
            }
            assert!(
                poll(&mut stream).is_pending(),
                "tick {tick}: one round per tick"
            );
        }
        assert_eq!(received.len(), 22);
        assert_eq!(ex.updates_delivered(), 22);
        assert!(received.iter().all(|c| !c.closed && c.validate().is_ok()));
    }

    #[test]
    fn stream_sends_several_updates_per_tick_when_flooding() {
        let ex = exchange(100_000.0, FaultConfig::default());
        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        let mut stream = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        assert!(poll(&mut stream).is_ready());
        assert!(poll(&mut stream).is_pending());
        clock.advance(1);
        let mut count = 0;
        while let Poll::Ready(Some(item)) = poll(&mut stream) {
            assert_eq!(item.unwrap(), expected(&k, T0 + 1));
            count += 1;
        }
        assert_eq!(count, 100, "a 1 ms tick at 100,000/s carries 100 updates");
        // A long stall is not replayed: at most two ticks' worth follow.
        clock.advance(5_000);
        let mut count = 0;
        while poll(&mut stream).is_ready() {
            count += 1;
        }
        assert_eq!(count, 200);
    }

    #[test]
    fn stream_closes_each_candle_at_its_boundary() {
        let ex = exchange(1.0, FaultConfig::default());
        let m1 = key("BTCUSDT", Interval::M1);
        let m5 = key("XRPUSDT", Interval::M5);
        let clock = TestClock::at(T0 + 59_500);
        let mut stream = ex
            .open_stream(&[m1.clone(), m5.clone()], clock.clone())
            .unwrap();
        let first = next(&mut stream, &clock).unwrap();
        assert_eq!(first, candle_at(42, &m1, T0, 59));
        assert_eq!(
            next(&mut stream, &clock).unwrap(),
            expected(&m5, T0 + 59_500)
        );

        // Cross the minute: the 1m candle is sent once more, final, then
        // the new candle; the 5m candle (T0 + 1 min is mid-candle) goes on.
        clock.advance(1_000);
        let closing = next(&mut stream, &clock).unwrap();
        assert!(closing.closed);
        assert_eq!(closing, final_candle(42, &m1, T0));
        assert_eq!(closing.close, price_at(42, &m1.symbol, T0 + 60_000));
        let opening = next(&mut stream, &clock).unwrap();
        assert_eq!(opening, candle_at(42, &m1, T0 + 60_000, 0));
        assert!(!opening.closed);
        assert_eq!(
            opening.open, closing.close,
            "continuous across the boundary"
        );
        assert_eq!(
            next(&mut stream, &clock).unwrap(),
            expected(&m5, T0 + 60_500)
        );
    }

    #[test]
    fn after_a_long_stall_only_the_latest_candle_is_closed() {
        let ex = exchange(1.0, FaultConfig::default());
        let k = key("ETHUSDT", Interval::M1);
        let clock = TestClock::at(T0 + 10_000);
        let mut stream = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        assert_eq!(
            next(&mut stream, &clock).unwrap(),
            candle_at(42, &k, T0, 10)
        );
        // Five boundaries pass: the candles in between are not replayed.
        clock.advance(5 * 60_000);
        let now = clock.wall_ms();
        let closing = next(&mut stream, &clock).unwrap();
        assert_eq!(closing, final_candle(42, &k, T0 + 4 * 60_000));
        assert_eq!(next(&mut stream, &clock).unwrap(), expected(&k, now));
    }

    #[test]
    fn stream_without_subscriptions_stays_open_and_quiet() {
        let ex = exchange(1_000.0, FaultConfig::default());
        let clock = TestClock::at(T0);
        let mut stream = ex.open_stream(&[], clock.clone()).unwrap();
        for _ in 0..5 {
            assert!(poll(&mut stream).is_pending());
            clock.advance(60_000);
        }
    }

    #[test]
    fn stream_rejects_foreign_series_and_serves_duplicates_once() {
        let ex = exchange(1.0, FaultConfig::default());
        let foreign = SeriesKey::new(
            ExchangeId::BinanceFutures,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        );
        let err = ex
            .open_stream(&[foreign], TestClock::at(T0))
            .err()
            .expect("a binance series is refused");
        assert!(matches!(err, ExchangeError::Rejected(_)), "{err}");

        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        let mut stream = ex.open_stream(&[k.clone(), k.clone()], clock).unwrap();
        assert!(poll(&mut stream).is_ready());
        assert!(
            poll(&mut stream).is_pending(),
            "one update per round, not two"
        );
    }

    #[tokio::test]
    async fn real_stream_delivers_valid_updates() {
        let ex = exchange(1_000.0, FaultConfig::default());
        let k = key("DOGEUSDT", Interval::M1);
        let mut stream = ex.stream(std::slice::from_ref(&k)).await.unwrap();
        // The timeout only guards against a hang; nothing is timed.
        let updates: Vec<Candle> = tokio::time::timeout(
            Duration::from_secs(30),
            (&mut stream).take(20).collect::<Vec<_>>(),
        )
        .await
        .expect("20 updates at 1000/s")
        .into_iter()
        .map(|event| match event.unwrap() {
            LiveEvent::Candle(candle) => candle,
            other => panic!("the simulated stream sends candles only, got {other:?}"),
        })
        .collect();
        assert!(updates.iter().all(|c| c.key == k && c.validate().is_ok()));

        let mut quiet = ex.stream(&[]).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), quiet.next())
                .await
                .is_err()
        );
    }

    #[test]
    fn panic_fault_fires_once_inside_the_consumer() {
        let faults = FaultConfig {
            panic_after_updates: Some(3),
            ..FaultConfig::default()
        };
        let ex = exchange(1.0, faults);
        let keys = [key("BTCUSDT", Interval::M1), key("ETHUSDT", Interval::M1)];
        let clock = TestClock::at(T0);
        let mut stream = ex.open_stream(&keys, clock.clone()).unwrap();
        for _ in 0..3 {
            next(&mut stream, &clock).unwrap();
        }
        let panic = catch_unwind(AssertUnwindSafe(|| poll(&mut stream))).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert_eq!(message, "simulated fault: panic after 3 updates");

        // The instance survives (the supervisor keeps it); the next stream
        // runs normally.
        let mut stream = ex.open_stream(&keys, clock.clone()).unwrap();
        for _ in 0..10 {
            next(&mut stream, &clock).unwrap();
        }
        assert_eq!(ex.updates_delivered(), 13);
    }

    #[test]
    fn drop_fault_ends_one_stream_once_counting_all_streams() {
        let faults = FaultConfig {
            drop_stream_after_updates: Some(4),
            ..FaultConfig::default()
        };
        let ex = exchange(1.0, faults);
        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        // Two updates on a stream the consumer closes itself…
        let mut first = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        next(&mut first, &clock).unwrap();
        next(&mut first, &clock).unwrap();
        drop(first);
        // …count towards the threshold of the next one.
        let mut second = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        next(&mut second, &clock).unwrap();
        next(&mut second, &clock).unwrap();
        assert!(
            matches!(poll(&mut second), Poll::Ready(None)),
            "peer disconnect"
        );
        assert!(
            matches!(poll(&mut second), Poll::Ready(None)),
            "stays ended"
        );

        let mut third = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        for _ in 0..5 {
            assert!(next(&mut third, &clock).is_some());
        }
    }

    #[test]
    fn repeating_faults_fire_every_n_updates() {
        let faults = FaultConfig {
            drop_stream_after_updates: Some(3),
            repeat: true,
            ..FaultConfig::default()
        };
        let ex = exchange(1.0, faults);
        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        for round in 1..=3 {
            let mut stream = ex
                .open_stream(std::slice::from_ref(&k), clock.clone())
                .unwrap();
            for _ in 0..3 {
                assert!(next(&mut stream, &clock).is_some(), "round {round}");
            }
            assert!(
                matches!(poll(&mut stream), Poll::Ready(None)),
                "round {round}: dropped again"
            );
        }
        assert_eq!(ex.updates_delivered(), 9);
    }

    #[test]
    fn silence_fault_keeps_the_stream_open_and_mute_once() {
        let faults = FaultConfig {
            silence_after_updates: Some(2),
            ..FaultConfig::default()
        };
        let ex = exchange(10.0, faults);
        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        let mut stream = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        next(&mut stream, &clock).unwrap();
        next(&mut stream, &clock).unwrap();
        // An hour of test time, polled every second: nothing, not even an end.
        for _ in 0..3_600 {
            assert!(poll(&mut stream).is_pending());
            clock.advance(1_000);
        }
        assert_eq!(ex.updates_delivered(), 2);

        let mut stream = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        assert!(next(&mut stream, &clock).is_some());
    }

    #[test]
    fn block_fault_blocks_once_then_delivers() {
        let faults = FaultConfig {
            block_after_updates: Some(1),
            block_ms: 5,
            ..FaultConfig::default()
        };
        let ex = exchange(1.0, faults);
        let k = key("BTCUSDT", Interval::M1);
        let clock = TestClock::at(T0);
        let mut stream = ex
            .open_stream(std::slice::from_ref(&k), clock.clone())
            .unwrap();
        next(&mut stream, &clock).unwrap();
        assert!(!ex.faults.block_fired());
        // This poll sleeps 5 ms on the test thread, then updates go on.
        let after = next(&mut stream, &clock).unwrap();
        assert!(ex.faults.block_fired());
        assert_eq!(after, expected(&k, clock.wall_ms()));
        for _ in 0..5 {
            next(&mut stream, &clock).unwrap();
        }
        assert_eq!(ex.updates_delivered(), 7);
    }
}
