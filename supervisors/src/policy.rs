//! The restart policy: Erlang's `one_for_one` with exponential backoff and
//! a restart-intensity limit. Pure bookkeeping, no actors, no clock reads.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When and how often a dead child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the first restart; doubles with each consecutive one.
    pub initial_delay: Duration,
    /// Longest delay between restarts, and the slow schedule of a child
    /// marked failed.
    pub max_delay: Duration,
    /// Restarts allowed within `period` before the child is marked failed.
    pub intensity: usize,
    /// The window `intensity` is counted in.
    pub period: Duration,
    /// A child that ran this long before dying starts its backoff afresh.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    /// 1 s doubling to 60 s; more than 5 restarts in 60 s mark the child
    /// failed (it is then retried every 60 s: one misbehaving exchange
    /// must never take the process down, nor spin it).
    fn default() -> Self {
        RestartPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            intensity: 5,
            period: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// What to do about a child that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart it after this delay (before jitter).
    RestartAfter(Duration),
    /// Too many restarts: mark it failed and retry after this delay.
    GiveUp {
        /// The slow schedule's delay.
        retry_after: Duration,
    },
}

/// Restart history of one child.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    recent: VecDeque<Instant>,
    consecutive: u32,
}

impl RestartTracker {
    /// Records a death at `now` of a child that had run for `ran_for`, and
    /// decides what to do.
    pub fn on_exit(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        ran_for: Duration,
    ) -> RestartDecision {
        if ran_for >= policy.stable_after {
            self.consecutive = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= policy.period)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > policy.intensity {
            return RestartDecision::GiveUp {
                retry_after: policy.max_delay,
            };
        }
        let exponent = self.consecutive.saturating_sub(1).min(31);
        let delay = policy
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(policy.max_delay);
        RestartDecision::RestartAfter(delay)
    }
}

impl RestartTracker {
    /// Records that the child was stopped on purpose (a config change, a
    /// reload) after running for `ran_for`. A stable run ends the streak of
    /// quick deaths as a death after it would: otherwise a child restarted
    /// by a config change would carry its old backoff into its next death.
    pub fn on_stop(&mut self, policy: &RestartPolicy, ran_for: Duration) {
        if ran_for >= policy.stable_after {
            self.consecutive = 0;
        }
    }
}

/// ±20 % of `base`, so that children that died together do not restart
/// in lockstep.
pub fn with_jitter(base: Duration) -> Duration {
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RestartPolicy {
            intensity: 100,
            ..RestartPolicy::default()
        };
        let mut tracker = RestartTracker::default();
        let t0 = Instant::now();
        let delays: Vec<_> = (0..8)
            .map(|i| tracker.on_exit(&policy, t0 + i * 10 * S, S))
            .collect();
        let expected = [1, 2, 4, 8, 16, 32, 60, 60].map(|s| RestartDecision::RestartAfter(s * S));
        assert_eq!(delays, expected);
    }

    #[test]
    fn a_stable_run_ended_on_purpose_resets_the_backoff() {
        let policy = RestartPolicy {
            intensity: 100,
            ..RestartPolicy::default()
        };
        let mut tracker = RestartTracker::default();
        let t0 = Instant::now();
        tracker.on_exit(&policy, t0, S);
        tracker.on_exit(&policy, t0 + 10 * S, S);
        // A config change stops the child after a long, healthy run; the
        // new incarnation dies at once.
        tracker.on_stop(&policy, 120 * S);
        assert_eq!(
            tracker.on_exit(&policy, t0 + 200 * S, S),
            RestartDecision::RestartAfter(S)
        );
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let t0 = Instant::now();
        tracker.on_exit(&policy, t0, S);
        assert_eq!(
            tracker.on_exit(&policy, t0 + 2 * S, S),
            RestartDecision::RestartAfter(2 * S)
        );
        assert_eq!(
            tracker.on_exit(&policy, t0 + 200 * S, 120 * S),
            RestartDecision::RestartAfter(S)
        );
    }

    #[test]
    fn too_many_restarts_in_the_period_give_up_then_the_window_slides() {
        let policy = RestartPolicy::default();
        let mut tracker = RestartTracker::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(matches!(
                tracker.on_exit(&policy, t0 + i * S, S),
                RestartDecision::RestartAfter(_)
            ));
        }
        assert_eq!(
            tracker.on_exit(&policy, t0 + 5 * S, S),
            RestartDecision::GiveUp {
                retry_after: 60 * S
            }
        );
        // A minute later the old restarts no longer count.
        assert!(matches!(
            tracker.on_exit(&policy, t0 + 70 * S, S),
            RestartDecision::RestartAfter(_)
        ));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = with_jitter(10 * S);
            assert!(d >= 8 * S && d <= 12 * S, "{d:?}");
        }
    }
}
