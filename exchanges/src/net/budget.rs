//! The REST budget of one exchange: request weights counted over the
//! exchange's window, and the pauses the exchange orders (`429` with
//! `Retry-After`, a `418` ban, a used-weight header near the limit).
//!
//! One budget per exchange and base URL, shared by every series, every
//! caller (history, gap fills, integrity checks, `/exchangeSymbols`) and
//! every adapter instance of the process ([`RestBudget::shared`]), so
//! rebuilding an adapter on `/restart` does not forget a ban.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ohlcv_domain::ExchangeId;

/// What an exchange allows: `capacity` weight per `window`. Adapters set
/// it below the documented limit, so other clients of the same IP keep
/// some room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetLimits {
    /// Weight that may be spent per window.
    pub capacity: u32,
    /// The window the exchange counts over.
    pub window: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// When each request of the current window was sent, and its weight.
    spent: VecDeque<(Instant, u32)>,
    /// No request before this instant (a `Retry-After`, a ban).
    paused_until: Option<Instant>,
}

/// The shared budget of one exchange endpoint.
#[derive(Debug)]
pub(crate) struct RestBudget {
    limits: BudgetLimits,
    state: Mutex<State>,
}

impl RestBudget {
    /// A budget of its own, not shared (tests).
    pub fn new(limits: BudgetLimits) -> RestBudget {
        RestBudget {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// The process-wide budget of `exchange` at `rest_url`.
    pub fn shared(exchange: ExchangeId, rest_url: &str, limits: BudgetLimits) -> Arc<RestBudget> {
        type Budgets = Mutex<HashMap<(ExchangeId, String), Arc<RestBudget>>>;
        static BUDGETS: OnceLock<Budgets> = OnceLock::new();
        let budgets = BUDGETS.get_or_init(Default::default);
        let mut budgets = budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets
            .entry((exchange, rest_url.trim_end_matches('/').to_owned()))
            .or_insert_with(|| Arc::new(RestBudget::new(limits)))
            .clone()
    }

    /// Waits until a request of `weight` may be sent, and charges it.
    pub async fn acquire(&self, weight: u32) {
        loop {
            match self.try_acquire(weight, Instant::now()) {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Charges `weight` at `now` if the budget allows it, or says how long
    /// to wait before asking again.
    pub fn try_acquire(&self, weight: u32, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = state.paused_until {
            if until > now {
                return Err(until - now);
            }
            state.paused_until = None;
        }
        let window = self.limits.window;
        while state
            .spent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= window)
        {
            state.spent.pop_front();
        }
        // A request heavier than the whole budget still goes, alone.
        let weight = weight.min(self.limits.capacity);
        let used: u32 = state.spent.iter().map(|(_, w)| w).sum();
        if used + weight <= self.limits.capacity {
            state.spent.push_back((now, weight));
            return Ok(());
        }
        // Wait until enough of the oldest requests leave the window.
        let mut freed = 0;
        for (at, w) in &state.spent {
            freed += w;
            if used - freed + weight <= self.limits.capacity {
                return Err((*at + window).saturating_duration_since(now).max(MIN_WAIT));
            }
        }
        Err(window)
    }

    /// No request before `now + pause`: the exchange said so (`Retry-After`,
    /// a ban, a used-weight header at the limit). A shorter pause never
    /// shortens a longer one already in force.
    pub fn pause(&self, now: Instant, pause: Duration) {
        let until = now + pause;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.paused_until.is_none_or(|t| t < until) {
            state.paused_until = Some(until);
        }
    }

    /// How long requests are still paused at `now`, if they are.
    #[cfg(test)]
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .paused_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

/// Shortest wait handed out, so a caller does not spin on a window edge.
const MIN_WAIT: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BudgetLimits = BudgetLimits {
        capacity: 10,
        window: Duration::from_secs(1),
    };

    #[test]
    fn weights_are_counted_over_the_window() {
        let budget = RestBudget::new(LIMITS);
        let t0 = Instant::now();
        assert!(budget.try_acquire(6, t0).is_ok());
        assert!(budget.try_acquire(4, t0).is_ok());
        let wait = budget.try_acquire(1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Once the first request leaves the window there is room again.
        assert!(budget.try_acquire(6, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends_and_is_never_shortened() {
        let budget = RestBudget::new(LIMITS);
        let t0 = Instant::now();
        budget.pause(t0, Duration::from_secs(30));
        budget.pause(t0, Duration::from_secs(5));
        assert_eq!(budget.paused_for(t0), Some(Duration::from_secs(30)));
        assert_eq!(
            budget.try_acquire(1, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        assert!(budget.try_acquire(1, t0 + Duration::from_secs(30)).is_ok());
        assert_eq!(budget.paused_for(t0 + Duration::from_secs(30)), None);
    }

    #[test]
    fn a_request_heavier_than_the_budget_still_goes_alone() {
        let budget = RestBudget::new(LIMITS);
        let t0 = Instant::now();
        assert!(budget.try_acquire(50, t0).is_ok());
        assert!(budget.try_acquire(1, t0).is_err());
    }

    #[test]
    fn the_shared_budget_is_one_per_exchange_and_url() {
        let a = RestBudget::shared(ExchangeId::BinanceFutures, "http://x/", LIMITS);
        let b = RestBudget::shared(ExchangeId::BinanceFutures, "http://x", LIMITS);
        let c = RestBudget::shared(ExchangeId::OkxFutures, "http://x", LIMITS);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
