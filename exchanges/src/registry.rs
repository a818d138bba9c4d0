//! The adapter registry: which exchanges this build can collect from,
//! which intervals each serves, and the factory that builds an adapter
//! from its config.
//!
//! Everything that decides whether an exchange can be enabled asks here
//! ([`adapter`], [`supported_intervals`], [`check_config`]) rather than
//! hard-coding it, so a new adapter is one entry in [`ADAPTERS`] and the
//! domain types stay free of what this build happens to support.

use std::sync::Arc;

use ohlcv_domain::config::{Config, ConfigError, ExchangeConfig};
use ohlcv_domain::{ExchangeId, Interval};

use crate::simulated::SimulatedExchange;
use crate::source::{ExchangeError, MarketSource};

/// What this build can collect from one exchange: the registry's entry for
/// it.
#[derive(Debug, Clone, Copy)]
pub struct Adapter {
    /// The exchange.
    pub exchange: ExchangeId,
    /// The candle intervals the adapter serves, shortest first: the
    /// `intervals` a config may list while this exchange is enabled.
    pub intervals: &'static [Interval],
    /// Makes the adapter from the exchange's settings.
    make: fn(&ExchangeConfig) -> Result<Arc<dyn MarketSource>, ExchangeError>,
}

impl Adapter {
    /// Builds this adapter with `config`'s settings.
    ///
    /// # Errors
    /// [`ExchangeError`] when the adapter cannot be made from these settings.
    pub fn build(&self, config: &ExchangeConfig) -> Result<Arc<dyn MarketSource>, ExchangeError> {
        (self.make)(config)
    }

    /// Whether the adapter serves candles of `interval`.
    pub fn supports(&self, interval: Interval) -> bool {
        self.intervals.contains(&interval)
    }
}

/// Every adapter of this build, in [`ExchangeId`] order. Each real
/// exchange names every interval we know (`interval_name`, `bar`; a test
/// checks it), so all serve [`Interval::ALL`] today; an adapter that
/// lacked one would list fewer, and [`check_config`] would refuse it.
pub const ADAPTERS: &[Adapter] = &[
    Adapter {
        exchange: ExchangeId::BinanceFutures,
        intervals: &Interval::ALL,
        make: crate::binance_futures::adapter::build,
    },
    Adapter {
        exchange: ExchangeId::BybitFutures,
        intervals: &Interval::ALL,
        make: crate::bybit_futures::adapter::build,
    },
    Adapter {
        exchange: ExchangeId::OkxFutures,
        intervals: &Interval::ALL,
        make: crate::okx_futures::adapter::build,
    },
    Adapter {
        exchange: ExchangeId::Simulated,
        // The simulated market aligns any fixed-length interval.
        intervals: &Interval::ALL,
        make: make_simulated,
    },
];

fn make_simulated(config: &ExchangeConfig) -> Result<Arc<dyn MarketSource>, ExchangeError> {
    Ok(Arc::new(SimulatedExchange::new(
        config.simulation.clone().unwrap_or_default(),
    )))
}

/// The adapter of `exchange`, or `None` when this build has none.
pub fn adapter(exchange: ExchangeId) -> Option<&'static Adapter> {
    ADAPTERS.iter().find(|a| a.exchange == exchange)
}

/// The intervals `exchange`'s adapter serves; none without an adapter.
pub fn supported_intervals(exchange: ExchangeId) -> &'static [Interval] {
    adapter(exchange).map_or(&[], |a| a.intervals)
}

/// Builds the adapter for `id` with its settings.
///
/// # Errors
/// [`ExchangeError::Rejected`] for an exchange this build has no adapter
/// for ([`check_config`] refuses enabling those), or the adapter's own
/// error.
pub fn build(
    id: ExchangeId,
    config: &ExchangeConfig,
) -> Result<Arc<dyn MarketSource>, ExchangeError> {
    match adapter(id) {
        Some(adapter) => adapter.build(config),
        None => Err(ExchangeError::Rejected(format!(
            "the {id} adapter is not available in this version"
        ))),
    }
}

/// Checks that this build can run `config`: every enabled exchange has an
/// adapter, and that adapter serves every listed interval. The domain
/// rules ([`Config::validate`]) are not repeated here; run them first.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the first offending key, exchanges in id
/// order: `exchanges.<id>.enabled` for an exchange without an adapter,
/// `intervals[i]` for an interval an enabled exchange does not serve.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    check_against(ADAPTERS, config)
}

/// [`check_config`] against the registry `adapters` (tests use their own).
fn check_against(adapters: &[Adapter], config: &Config) -> Result<(), ConfigError> {
    for (id, _) in config.enabled_exchanges() {
        let Some(adapter) = adapters.iter().find(|a| a.exchange == id) else {
            let available: Vec<&str> = adapters.iter().map(|a| a.exchange.as_str()).collect();
            return Err(ConfigError::Invalid {
                key: format!("exchanges.{id}.enabled"),
                reason: format!(
                    "the {id} adapter is not available in this version; only {} can be enabled",
                    available.join(", ")
                ),
            });
        };
        if let Some((i, interval)) = config
            .intervals
            .iter()
            .enumerate()
            .find(|(_, interval)| !adapter.supports(**interval))
        {
            let served: Vec<&str> = adapter.intervals.iter().map(|i| i.as_str()).collect();
            return Err(ConfigError::Invalid {
                key: format!("intervals[{i}]"),
                reason: format!(
                    "{interval} is not served by the {id} adapter, which serves {}",
                    served.join(", ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        Config::from_value(json).expect("valid by the domain rules")
    }

    #[test]
    fn every_exchange_has_an_adapter_naming_each_interval_it_serves() {
        let simulated = adapter(ExchangeId::Simulated).expect("simulated adapter");
        assert_eq!(simulated.intervals, &Interval::ALL);
        // In id order, one entry per exchange.
        assert!(ADAPTERS.windows(2).all(|w| w[0].exchange < w[1].exchange));
        assert_eq!(ADAPTERS.len(), 4);
        for interval in supported_intervals(ExchangeId::BinanceFutures) {
            assert!(crate::binance_futures::interval_name(*interval).is_some());
        }
        for interval in supported_intervals(ExchangeId::BybitFutures) {
            assert!(crate::bybit_futures::interval_name(*interval).is_some());
        }
        for interval in supported_intervals(ExchangeId::OkxFutures) {
            assert!(crate::okx_futures::bar(*interval).is_some());
        }
        for entry in ADAPTERS {
            let source = entry.build(&ExchangeConfig::default()).unwrap();
            assert_eq!(source.id(), entry.exchange);
        }
    }

    #[test]
    fn enabling_an_exchange_without_an_adapter_is_refused_naming_the_key() {
        let simulated_only = [ADAPTERS[3]];
        let enabled = config(serde_json::json!({
            "exchanges": {
                "simulated": {"enabled": true, "symbols": ["BTCUSDT"]},
                "binance_futures": {"enabled": true, "symbols": ["BTCUSDT"]}
            }
        }));
        assert_eq!(
            check_against(&simulated_only, &enabled)
                .unwrap_err()
                .to_string(),
            "exchanges.binance_futures.enabled: the binance_futures adapter is not available \
             in this version; only simulated can be enabled"
        );
        assert!(check_config(&enabled).is_ok());
        // Configured but disabled is fine: its settings wait for an adapter.
        let disabled = config(serde_json::json!({
            "exchanges": {
                "simulated": {"enabled": true, "symbols": ["BTCUSDT"]},
                "okx_futures": {"enabled": false, "symbols": ["BTCUSDT"]}
            },
            "intervals": ["1m", "1w"]
        }));
        assert!(check_against(&simulated_only, &disabled).is_ok());
    }

    #[test]
    fn an_interval_an_enabled_adapter_does_not_serve_is_refused_naming_both() {
        // A registry whose binance adapter serves two intervals only.
        let adapters = [
            Adapter {
                exchange: ExchangeId::BinanceFutures,
                intervals: &[Interval::M1, Interval::M5],
                make: make_simulated,
            },
            ADAPTERS[3],
        ];
        let with = |binance: bool| {
            config(serde_json::json!({
                "exchanges": {
                    "binance_futures": {"enabled": binance, "symbols": ["BTCUSDT"]},
                    "simulated": {"enabled": true, "symbols": ["BTCUSDT"]}
                },
                "intervals": ["5m", "1m", "1h"]
            }))
        };
        assert_eq!(
            check_against(&adapters, &with(true))
                .unwrap_err()
                .to_string(),
            "intervals[2]: 1h is not served by the binance_futures adapter, which serves 1m, 5m"
        );
        // The simulated exchange alone serves all three.
        assert!(check_against(&adapters, &with(false)).is_ok());
        // Two adapters: both are named as what can be enabled.
        let okx = config(serde_json::json!({
            "exchanges": {"okx_futures": {"enabled": true}}
        }));
        assert!(check_against(&adapters, &okx)
            .unwrap_err()
            .to_string()
            .ends_with("only binance_futures, simulated can be enabled"));
    }
}
