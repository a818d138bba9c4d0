//! The adapter registry: the factory that builds the adapter for an
//! exchange id from its config.

use std::sync::Arc;

use ohlcv_domain::config::ExchangeConfig;
use ohlcv_domain::ExchangeId;

use crate::simulated;
use crate::source::{ExchangeError, MarketSource};

/// Builds the adapter for `id` with its settings.
///
/// # Errors
/// [`ExchangeError::Rejected`] for an exchange this build has no adapter for
/// (config validation refuses enabling those, so users meet this only when
/// listing such an exchange's symbols).
pub fn build(
    id: ExchangeId,
    config: &ExchangeConfig,
) -> Result<Arc<dyn MarketSource>, ExchangeError> {
    match id {
        ExchangeId::Simulated => Ok(Arc::new(simulated::SimulatedExchange::new(
            config.simulation.clone().unwrap_or_default(),
        ))),
        other => Err(ExchangeError::Rejected(format!(
            "the {other} adapter is not available in this version"
        ))),
    }
}
