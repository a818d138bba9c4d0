//! The simulated exchange's live stream: paced updates of the open candle
//! of every subscribed series, a final candle at each interval boundary, and
//! the injected faults.
//!
//! Pacing: a timer ticks every `max(1 ms, 1 / rate)`; at each tick the
//! stream works out how many update rounds (one update per series) are due
//! since it opened and yields them one per poll, so a flood of 100,000
//! updates a second costs a thousand timer wake-ups, not a sleep per update.
//! At most two ticks' worth of rounds are queued at once: when the consumer
//! or its thread falls further behind, the backlog is skipped, because every
//! update reads the current time and a replay would only repeat the same
//! candle.
//!
//! Boundaries are noticed at a series' next update: its final candle
//! arrives with that update, up to one update period after the boundary
//! (a second at the default rate), and is sent even if the consumer was
//! stalled across several boundaries (then only for the latest one).
//!
//! Time comes through [`Clock`], so tests drive a stream across a candle
//! boundary instantly instead of waiting a real minute.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use ohlcv_domain::config::FaultConfig;
use ohlcv_domain::{Candle, ExchangeId, SeriesKey};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::path::{step_at, CandleBuilder, Market, PricePath, STEPS_PER_CANDLE};
use crate::source::ExchangeError;

/// Where a stream gets its time from.
pub(super) trait Clock: Send + Unpin + 'static {
    /// Wall-clock time in UTC ms: which candle is open and at which step.
    fn wall_ms(&self) -> i64;
    /// Monotonic time since the stream's first tick: how many updates are
    /// due. Zero before the first tick.
    fn elapsed(&self) -> Duration;
    /// Ready at each pacing tick; registers the waker otherwise.
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// The production clock: the system's wall clock and a tokio timer.
///
/// The timer is created on the first poll, inside whatever runtime polls
/// the stream (a datasource's arbiter), not where the stream was built.
pub(super) struct TokioClock {
    period: Duration,
    timer: Option<(Instant, Interval)>,
}

impl TokioClock {
    /// A clock ticking every `period`.
    pub(super) fn new(period: Duration) -> Self {
        TokioClock {
            period,
            timer: None,
        }
    }
}

impl Clock for TokioClock {
    fn wall_ms(&self) -> i64 {
        ohlcv_domain::time::now_ms()
    }

    fn elapsed(&self) -> Duration {
        self.timer
            .as_ref()
            .map_or(Duration::ZERO, |(start, _)| start.elapsed())
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let period = self.period;
        let (_, timer) = self.timer.get_or_insert_with(|| {
            let mut timer = tokio::time::interval(period);
            // A late tick delays the next ones instead of bursting to catch
            // up; the update count is computed from elapsed time anyway.
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
            (Instant::now(), timer)
        });
        timer.poll_tick(cx).map(|_| ())
    }
}

/// Timer period for `rate` updates per second: one update per tick at low
/// rates, and no faster than 1 ms (the timer's resolution) at high ones.
pub(super) fn tick_period(rate: f64) -> Duration {
    Duration::from_secs_f64((1.0 / rate).max(0.001))
}

/// Fault counters of one exchange instance, shared by all its streams so
/// that each fault fires once even though the datasource reconnects.
#[derive(Debug, Default)]
pub(super) struct Faults {
    config: FaultConfig,
    /// Updates delivered by every stream of the instance.
    delivered: AtomicU64,
    /// How often each fault has fired.
    panic_fired: AtomicU64,
    drop_fired: AtomicU64,
    silence_fired: AtomicU64,
    block_fired: AtomicU64,
}

/// A fault that changes what the stream does from now on.
enum Terminal {
    Panic(u64),
    Drop(u64),
    Silence(u64),
}

/// Claims the next firing of a fault counted by `fired` if its threshold
/// has been reached: after `threshold` updates, then (with `repeat`) after
/// every further `threshold`.
fn claim(fired: &AtomicU64, threshold: Option<u64>, repeat: bool, delivered: u64) -> Option<u64> {
    let n = threshold?;
    let times = fired.load(Ordering::Acquire);
    let due = n.saturating_mul(times + 1);
    let claimed = (repeat || times == 0)
        && delivered >= due
        && fired
            .compare_exchange(times, times + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
    claimed.then_some(due)
}

impl Faults {
    /// Counters for `config`, nothing delivered yet.
    pub(super) fn new(config: FaultConfig) -> Self {
        Faults {
            config,
            ..Faults::default()
        }
    }

    /// Updates delivered so far by every stream of the instance.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Whether the block fault has fired.
    #[cfg(test)]
    pub(super) fn block_fired(&self) -> bool {
        self.block_fired.load(Ordering::Relaxed) > 0
    }

    fn record_delivery(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Fires the faults whose threshold is reached: a block happens right
    /// here; a terminal fault is returned for the stream to act on. Several
    /// faults due at once fire on successive polls (or streams), block first.
    fn check(&self) -> Option<Terminal> {
        let c = &self.config;
        if c.panic_after_updates.is_none()
            && c.drop_stream_after_updates.is_none()
            && c.silence_after_updates.is_none()
            && c.block_after_updates.is_none()
        {
            return None;
        }
        let delivered = self.delivered();
        if let Some(n) = claim(
            &self.block_fired,
            c.block_after_updates,
            c.repeat,
            delivered,
        ) {
            tracing::warn!(
                exchange = %ExchangeId::Simulated,
                updates = n,
                block_ms = c.block_ms,
                "simulated fault: blocking the datasource thread"
            );
            // Deliberately blocking inside poll: this freezes the consuming
            // actor's whole thread, so it misses its heartbeats and the
            // supervisor's stall detection is exercised for real.
            std::thread::sleep(Duration::from_millis(c.block_ms));
        }
        if let Some(n) = claim(
            &self.panic_fired,
            c.panic_after_updates,
            c.repeat,
            delivered,
        ) {
            return Some(Terminal::Panic(n));
        }
        if let Some(n) = claim(
            &self.drop_fired,
            c.drop_stream_after_updates,
            c.repeat,
            delivered,
        ) {
            return Some(Terminal::Drop(n));
        }
        claim(
            &self.silence_fired,
            c.silence_after_updates,
            c.repeat,
            delivered,
        )
        .map(Terminal::Silence)
    }
}

/// One subscribed series and the candle it is building.
struct Series {
    key: SeriesKey,
    path: PricePath,
    builder: Option<CandleBuilder>,
    /// Open time of the candle last updated, to notice boundaries.
    last_open: Option<i64>,
}

impl Series {
    /// The candle opening at `open` at `step`, extending the one being
    /// built when possible (identical to [`super::candle_at`]).
    fn candle(&mut self, open: i64, step: u32) -> Candle {
        let reusable = self
            .builder
            .as_ref()
            .is_some_and(|b| b.open_time() == open && b.step() <= step);
        if !reusable {
            self.builder = None;
        }
        let builder = self
            .builder
            .get_or_insert_with(|| CandleBuilder::new(&mut self.path, &self.key, open));
        builder.advance(&mut self.path, step);
        builder.candle(&self.path)
    }
}

/// What the stream does on its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Delivering updates.
    Live,
    /// Ended by a drop fault: `None` forever.
    Ended,
    /// Silenced by a fault: `Pending` forever, never woken.
    Silenced,
}

/// The stream behind `MarketSource::stream` of [`super::SimulatedExchange`].
pub(super) struct LiveStream<C> {
    clock: C,
    rate: f64,
    /// Most rounds queued at once (two ticks' worth).
    burst: u64,
    series: Vec<Series>,
    /// Next series to update in the current round.
    cursor: usize,
    /// Rounds due but not yet yielded.
    pending: u64,
    /// Rounds due since the first tick, yielded or skipped.
    scheduled: u64,
    /// Wall time read at the last tick: every update of the rounds queued
    /// then shows the market at that instant (one clock read per tick, not
    /// per update, matters when flooding).
    now: i64,
    faults: Arc<Faults>,
    state: State,
}

impl<C: Clock> LiveStream<C> {
    /// A stream of `keys` (already validated and deduplicated) at `rate`
    /// updates per second per series.
    pub(super) fn new(
        seed: u64,
        rate: f64,
        keys: Vec<SeriesKey>,
        faults: Arc<Faults>,
        clock: C,
    ) -> Self {
        let series = keys
            .into_iter()
            .map(|key| Series {
                path: PricePath::new(Market::new(seed, &key.symbol)),
                key,
                builder: None,
                last_open: None,
            })
            .collect();
        let per_tick = (rate * tick_period(rate).as_secs_f64()).ceil().max(1.0);
        LiveStream {
            clock,
            rate,
            burst: 2 * per_tick as u64,
            series,
            cursor: 0,
            pending: 0,
            scheduled: 0,
            now: 0,
            faults,
            state: State::Live,
        }
    }

    /// Queues the rounds that fell due since the last tick. The first round
    /// is due at once, so a new subscriber sees every series immediately.
    fn schedule(&mut self) {
        let elapsed_ns = self.clock.elapsed().as_nanos() as f64;
        let due = (elapsed_ns * self.rate / 1e9).floor() as u64 + 1;
        let new = due.saturating_sub(self.scheduled);
        self.scheduled = self.scheduled.max(due);
        self.pending += new.min(self.burst);
        self.now = self.clock.wall_ms();
    }

    /// The next update of the current round, preceded at a boundary by the
    /// final of the candle just closed.
    fn next_update(&mut self) -> Candle {
        let now = self.now;
        let series = &mut self.series[self.cursor];
        let interval = series.key.interval;
        let open = interval.align(now);
        let last = series.last_open.replace(open);
        if last.is_some_and(|last| open > last) {
            // The interval ended since the last update: send the candle
            // just before the new one once more, closed, as Binance's
            // `x: true` kline does. After a longer stall (several boundaries
            // passed) only that one is sent; the candles in between are not
            // replayed, like on a real exchange, and the datasource fills
            // them over REST. The new candle's update follows next poll.
            return series.candle(open - interval.duration_ms(), STEPS_PER_CANDLE);
        }
        let candle = series.candle(open, step_at(interval, open, now));
        self.cursor += 1;
        if self.cursor == self.series.len() {
            self.cursor = 0;
            self.pending -= 1;
        }
        candle
    }
}

impl<C: Clock> Stream for LiveStream<C> {
    type Item = Result<Candle, ExchangeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.state {
            State::Live => {}
            State::Ended => return Poll::Ready(None),
            State::Silenced => return Poll::Pending,
        }
        match this.faults.check() {
            None => {}
            Some(Terminal::Panic(n)) => {
                tracing::warn!(
                    exchange = %ExchangeId::Simulated,
                    updates = n,
                    "simulated fault: panicking"
                );
                panic!("simulated fault: panic after {n} updates");
            }
            Some(Terminal::Drop(n)) => {
                tracing::warn!(
                    exchange = %ExchangeId::Simulated,
                    updates = n,
                    "simulated fault: dropping the stream"
                );
                this.state = State::Ended;
                return Poll::Ready(None);
            }
            Some(Terminal::Silence(n)) => {
                tracing::warn!(
                    exchange = %ExchangeId::Simulated,
                    updates = n,
                    "simulated fault: silencing the stream"
                );
                // Pending without registering the waker: nothing will ever
                // wake this stream, like a socket that stays open and mute.
                this.state = State::Silenced;
                return Poll::Pending;
            }
        }
        if this.series.is_empty() {
            // Nothing subscribed: open and quiet, no timer needed.
            return Poll::Pending;
        }
        loop {
            if this.pending > 0 {
                let candle = this.next_update();
                this.faults.record_delivery();
                return Poll::Ready(Some(Ok(candle)));
            }
            match this.clock.poll_tick(cx) {
                Poll::Ready(()) => this.schedule(),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
pub(super) mod test_clock {
    //! A clock the test moves by hand.

    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, Default)]
    struct Inner {
        wall_ms: i64,
        elapsed: Duration,
        /// `elapsed` at the last tick; `None` before the first.
        ticked: Option<Duration>,
    }

    /// Ticks whenever it has been advanced since the last tick (and once at
    /// the start); clones share the same time.
    #[derive(Debug, Clone, Default)]
    pub(in super::super) struct TestClock(Arc<Mutex<Inner>>);

    impl TestClock {
        /// A clock reading `wall_ms`.
        pub(in super::super) fn at(wall_ms: i64) -> Self {
            let clock = TestClock::default();
            clock.0.lock().unwrap().wall_ms = wall_ms;
            clock
        }

        /// Moves wall and monotonic time forward by `ms`.
        pub(in super::super) fn advance(&self, ms: u64) {
            let mut inner = self.0.lock().unwrap();
            inner.wall_ms += ms as i64;
            inner.elapsed += Duration::from_millis(ms);
        }
    }

    impl Clock for TestClock {
        fn wall_ms(&self) -> i64 {
            self.0.lock().unwrap().wall_ms
        }

        fn elapsed(&self) -> Duration {
            self.0.lock().unwrap().elapsed
        }

        fn poll_tick(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
            let mut inner = self.0.lock().unwrap();
            if inner.ticked == Some(inner.elapsed) {
                Poll::Pending
            } else {
                inner.ticked = Some(inner.elapsed);
                Poll::Ready(())
            }
        }
    }
}
