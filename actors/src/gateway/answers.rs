//! The bodies of the HTTP routes' answers that are not a report of a
//! lower layer (those are [`StatusReport`](crate::control::StatusReport),
//! [`Config`], the rows of [`http`](super::http)), and the request bodies
//! of the `POST`s, typed so that the OpenAPI document
//! ([`openapi`](super::openapi)) is generated from them.
//!
//! The routes build their answers from these types. The request bodies are
//! read as [`UniqueKeys`](ohlcv_domain::json::UniqueKeys) and checked key
//! by key (each bad value gets its own error code), so the request types
//! here only describe them; a test holds them to the parsers.

use std::collections::BTreeMap;

use ohlcv_domain::config::{Config, ExchangeConfig};
use ohlcv_domain::{ExchangeId, Symbol};
use serde::Serialize;

use crate::control::ApplyReport;

/// `GET /health`: the process answers HTTP.
///
/// ```json
/// {"status":"ok"}
/// ```
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The `exchanges` object of the config, as `GET /exchanges` shows it.
pub type Exchanges = BTreeMap<ExchangeId, ExchangeConfig>;

/// `POST /config`: the config now in force (its `api_token` masked) and
/// what applying it did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigReplaced {
    /// The new config, as `GET /config` shows it.
    #[schema(value_type = Config)]
    pub config: serde_json::Value,
    /// Datasources started, stopped, reloaded; keys pending a restart.
    pub applied: ApplyReport,
}

/// `GET /exchangeSymbols/{exchange}`: what the exchange lists.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExchangeSymbols {
    /// The exchange asked.
    pub exchange: ExchangeId,
    /// Every symbol it lists, normalised.
    pub symbols: Vec<Symbol>,
}

/// `POST /exchangeSymbols`: the exchange's config with its new symbols.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SymbolsSet {
    /// The exchange changed.
    pub exchange: ExchangeId,
    /// Its config, saved.
    pub config: ExchangeConfig,
}

/// `POST /toggleExchange`: whether the exchange now runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExchangeToggled {
    /// The exchange changed.
    pub exchange: ExchangeId,
    /// Whether it is enabled now.
    pub enabled: bool,
    /// Its config, saved.
    pub config: ExchangeConfig,
}

/// `POST /restart`: the config file was re-read and applied.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Restarted {
    /// Always `true`; a refusal is an error answer.
    pub restarted: bool,
    /// What the restart did.
    pub applied: ApplyReport,
}

/// `POST /deleteDatabase`: every candle is gone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// Always `true`; a failure is an error answer.
    pub deleted: bool,
}

/// The body of `POST /exchangeSymbols`.
///
/// ```json
/// {"exchange":"simulated","symbols":["BTCUSDT"]}
/// ```
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"exchange": "simulated", "symbols": ["BTCUSDT"]}))]
pub struct SetSymbolsRequest {
    /// The exchange to change.
    pub exchange: ExchangeId,
    /// Its new symbols: each one it lists, no duplicates, at most 500.
    pub symbols: Vec<Symbol>,
}

/// The body of `POST /toggleExchange`.
///
/// ```json
/// {"exchange":"simulated","enabled":false}
/// ```
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"exchange": "simulated", "enabled": false}))]
pub struct ToggleRequest {
    /// The exchange to change.
    pub exchange: ExchangeId,
    /// Enable or disable it; absent or `null` toggles it.
    pub enabled: Option<bool>,
}
