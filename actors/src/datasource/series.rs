//! Per-series bookkeeping of a datasource: what is known final, what the
//! live stream has shown, and which ranges must be fetched over REST.

use std::time::{Duration, Instant};

use ohlcv_domain::{Candle, Interval};

/// First wait before a failed REST fetch of a series is tried again;
/// doubles per failure up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Longest wait between two REST attempts for one series.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// What a datasource knows about one series during one connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeriesState {
    /// Open time of the newest candle known stored final, with nothing
    /// missing before it since the last history sync.
    pub final_through: Option<i64>,
    /// Open time of the first candle this connection's live stream showed;
    /// from there on the stream owns the series and REST data is not used.
    pub live_first: Option<i64>,
    /// Open time of the newest live update.
    pub live_last: Option<i64>,
    /// A REST request for this series is under way.
    pub fetching: bool,
    /// No REST request for this series before this instant: the last one
    /// failed, or found the newest candle not final yet.
    pub retry_at: Option<Instant>,
    /// REST attempts in a row that failed or brought nothing new.
    pub failures: u32,
    /// Why the exchange refused this series (its live subscription or its
    /// REST requests); a refused series is not asked for again until the
    /// datasource reloads.
    pub refused: Option<String>,
}

impl SeriesState {
    /// Forgets what the previous connection showed.
    pub fn reset_live(&mut self) {
        self.live_first = None;
        self.live_last = None;
        self.fetching = false;
        self.retry_at = None;
        self.failures = 0;
        self.refused = None;
    }

    /// Whether a REST request for this series may start at `now`.
    pub fn may_fetch(&self, now: Instant) -> bool {
        !self.fetching && self.refused.is_none() && self.retry_at.is_none_or(|t| t <= now)
    }

    /// Records that a REST attempt failed or brought nothing new: the next
    /// one waits, twice as long each time (±20 % jitter), so a series whose
    /// exchange is down, or whose newest candle is late, costs a request
    /// per wait, not one per second.
    pub fn back_off(&mut self, now: Instant, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST_RETRY_DELAY
            .saturating_mul(1 << self.failures.min(10).saturating_sub(1))
            .min(MAX_RETRY_DELAY);
        self.retry_at = Some(now + delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)));
    }

    /// Records a REST attempt that moved the series forward.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The range of open times to fetch over REST because their final
    /// candles are overdue at `now_ms`: every candle that closed more than
    /// `grace_ms` ago should be final by now, whether or not the live
    /// stream has shown anything since (a quiet or stalled stream is caught
    /// here, a missed close in [`observe_live`](Self::observe_live)).
    pub fn overdue(&self, interval: Interval, now_ms: i64, grace_ms: i64) -> Option<(i64, i64)> {
        let step = interval.duration_ms();
        let final_through = self.final_through?;
        let newest_due = interval.align(now_ms - grace_ms) - step;
        (newest_due > final_through).then_some((final_through + step, newest_due))
    }

    /// Whether a live update would replace a candle already known final
    /// with an unfinished state (an exchange replaying an old update): such
    /// an update is dropped, a final candle never goes back to open.
    pub fn is_stale(&self, candle: &Candle) -> bool {
        !candle.closed && self.final_through.is_some_and(|t| candle.open_time <= t)
    }

    /// Records a live update; answers the range `(from, to)` of open times
    /// that must be fetched over REST because their final candles were not
    /// seen, if any.
    pub fn observe_live(&mut self, candle: &Candle) -> Option<(i64, i64)> {
        let step = candle.key.interval.duration_ms();
        self.live_first.get_or_insert(candle.open_time);
        self.live_last = Some(
            self.live_last
                .map_or(candle.open_time, |t| t.max(candle.open_time)),
        );
        let final_through = self.final_through?;
        if candle.closed && candle.open_time == final_through + step {
            self.final_through = Some(candle.open_time);
            return None;
        }
        let first_missing = final_through + step;
        // Everything before the candle shown now should be final by now.
        let newest_needed = candle.open_time - step;
        if newest_needed >= first_missing && !self.fetching {
            Some((first_missing, newest_needed))
        } else {
            None
        }
    }

    /// Which of `candles` (fetched over REST) to store: every closed one
    /// (final values are final, whoever delivers them) and the open ones the
    /// live stream has not shown (from its first candle on, the stream's
    /// updates are newer than any REST snapshot). Advances `final_through`
    /// over the closed candles.
    pub fn accept_history(&mut self, interval: Interval, candles: Vec<Candle>) -> Vec<Candle> {
        let step = interval.duration_ms();
        let kept: Vec<Candle> = candles
            .into_iter()
            .filter(|c| c.closed || self.live_first.is_none_or(|first| c.open_time < first))
            .collect();
        for candle in kept.iter().filter(|c| c.closed) {
            match self.final_through {
                Some(t) if candle.open_time <= t => {}
                Some(t) if candle.open_time == t + step => {
                    self.final_through = Some(candle.open_time)
                }
                // History starts (bootstrap) or jumps: REST returns what the
                // exchange has, and a hole in the exchange's own data is
                // not ours to fill.
                _ => self.final_through = Some(candle.open_time),
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{ExchangeId, SeriesKey, Symbol};

    const T0: i64 = 1_704_067_200_000;
    const M: i64 = 60_000;

    fn candle(i: i64, closed: bool) -> Candle {
        Candle {
            key: SeriesKey::new(
                ExchangeId::Simulated,
                Symbol::new("BTCUSDT").unwrap(),
                Interval::M1,
            ),
            open_time: T0 + i * M,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
            closed,
        }
    }

    #[test]
    fn history_then_live_closes_advance_without_gaps() {
        let mut s = SeriesState::default();
        let kept = s.accept_history(Interval::M1, (0..5).map(|i| candle(i, i < 4)).collect());
        assert_eq!(kept.len(), 5);
        assert_eq!(s.final_through, Some(T0 + 3 * M));
        assert_eq!(s.observe_live(&candle(4, false)), None);
        assert_eq!(s.observe_live(&candle(4, true)), None);
        assert_eq!(s.final_through, Some(T0 + 4 * M));
        assert_eq!(s.observe_live(&candle(5, false)), None);
    }

    #[test]
    fn a_missed_close_asks_for_the_missing_range() {
        let mut s = SeriesState::default();
        s.accept_history(Interval::M1, (0..3).map(|i| candle(i, true)).collect());
        // Candles 3..=6 were never seen final; the stream now shows 7.
        assert_eq!(
            s.observe_live(&candle(7, false)),
            Some((T0 + 3 * M, T0 + 6 * M))
        );
        s.fetching = true;
        assert_eq!(
            s.observe_live(&candle(7, false)),
            None,
            "one request at a time"
        );
    }

    #[test]
    fn a_gap_fill_after_the_stream_started_keeps_the_closed_candles() {
        let mut s = SeriesState::default();
        s.accept_history(Interval::M1, (0..3).map(|i| candle(i, true)).collect());
        s.observe_live(&candle(3, false));
        let range = s.observe_live(&candle(7, false)).unwrap();
        assert_eq!(range, (T0 + 3 * M, T0 + 6 * M));
        let kept = s.accept_history(Interval::M1, (3..=6).map(|i| candle(i, true)).collect());
        assert_eq!(kept.len(), 4);
        assert_eq!(s.final_through, Some(T0 + 6 * M));
    }

    #[test]
    fn an_unfinished_update_of_a_final_candle_is_stale() {
        let mut s = SeriesState::default();
        assert!(!s.is_stale(&candle(0, false)), "nothing known yet");
        s.accept_history(Interval::M1, (0..3).map(|i| candle(i, true)).collect());
        assert!(s.is_stale(&candle(2, false)));
        assert!(
            !s.is_stale(&candle(2, true)),
            "a final repeated is harmless"
        );
        assert!(!s.is_stale(&candle(3, false)));
    }

    #[test]
    fn history_never_overwrites_what_the_live_stream_owns() {
        let mut s = SeriesState::default();
        s.observe_live(&candle(4, false));
        let kept = s.accept_history(Interval::M1, (0..5).map(|i| candle(i, i < 4)).collect());
        assert_eq!(kept.iter().map(|c| c.open_time).max(), Some(T0 + 3 * M));
        assert_eq!(s.final_through, Some(T0 + 3 * M));
    }
}
