//! The commands UI clients can give, as the gateway sees them.
//!
//! The gateway cannot depend on the supervisor (the supervisor depends on
//! the actors), so it talks to a [`Control`]: the supervisor crate
//! implements it on the supervisor's address, and gateway tests may
//! implement it on anything.

use async_trait::async_trait;
use ohlcv_domain::config::{ApiToken, Config, ExchangeConfig};
use ohlcv_domain::{ExchangeId, Symbol};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::metrics::WorkerMetrics;

/// Why a command was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// The request asks for something invalid (bad config, unknown
    /// exchange, an exchange without an adapter); nothing was changed.
    #[error("{message}")]
    Invalid {
        /// Stable code (`invalid_config`, `unknown_exchange`, …).
        code: &'static str,
        /// What is wrong, naming the key where there is one.
        message: String,
    },
    /// An exchange could not be asked (down, rate limiting, bad answer).
    #[error("exchange error: {0}")]
    Exchange(String),
    /// The collector cannot do it right now (storage busy, restarting);
    /// trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the collector (the config file could not be
    /// written, the database refused).
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// A refusal of invalid input with a stable code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ControlError::Invalid {
            code,
            message: message.into(),
        }
    }
}

/// State of one supervised child, as `/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChildStatus {
    /// `storage`, `monitor`, `gateway` or the exchange id.
    pub name: String,
    /// `running`, `restarting`, `failed` or `stopped`.
    pub state: String,
    /// Restarts since the process started.
    pub restarts: u32,
    /// Why it last ended, if it ever did.
    pub last_error: Option<String>,
    /// When the current incarnation started, UTC ms.
    pub started_at: Option<i64>,
    /// When its last heartbeat arrived, UTC ms.
    pub last_heartbeat: Option<i64>,
    /// Threads of earlier incarnations that stalled and have not ended
    /// yet (they cannot be joined while blocked); bounded, see the README.
    pub abandoned_threads: usize,
    /// Its own counters from the last heartbeat of this incarnation;
    /// `{}` until there is one, as before these were typed.
    #[serde(serialize_with = "empty_object_when_absent")]
    #[schema(schema_with = metrics_schema, required = true)]
    pub metrics: Option<WorkerMetrics>,
}

/// Serialises absent metrics as `{}`, so a client reading
/// `children[i].metrics.cpuUser` gets nothing instead of failing on `null`.
fn empty_object_when_absent<S: Serializer>(
    metrics: &Option<WorkerMetrics>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match metrics {
        Some(metrics) => metrics.serialize(serializer),
        None => serializer.serialize_map(Some(0))?.end(),
    }
}

/// The schema of [`ChildStatus::metrics`] as [`empty_object_when_absent`]
/// writes it: the worker's metrics, or `{}` before its first heartbeat
/// (never `null`, which a derived schema of the `Option` would say).
fn metrics_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    use utoipa::ToSchema;
    // A reference, so the document lists the kinds of metrics once (the
    // document registers `WorkerMetrics` among its schemas).
    let metrics = utoipa::openapi::Ref::from_schema_name(WorkerMetrics::name());
    let one_of = OneOfBuilder::new()
        .item(metrics)
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .max_properties(Some(0))
                .description(Some("before the first heartbeat of this incarnation")),
        )
        .build();
    Schema::OneOf(one_of)
}

/// What `/status` and the `status` command answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Threads of the process right now (absent where the OS does not say).
    pub threads: Option<usize>,
    /// Threads of stalled incarnations not ended yet, over all children.
    pub abandoned_threads: usize,
    /// Every child, storage first, then monitor, gateway and datasources.
    pub children: Vec<ChildStatus>,
}

/// What a restart or config change did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ApplyReport {
    /// Datasources started.
    pub started: Vec<ExchangeId>,
    /// Datasources stopped.
    pub stopped: Vec<ExchangeId>,
    /// Datasources restarted or reloaded with new symbols or intervals.
    pub reloaded: Vec<ExchangeId>,
    /// Keys whose new value takes effect at the next process start
    /// (`port`, `bind`, `database_path`) or at the gateway's next start
    /// (`allowed_origins`, `allowed_hosts`, `rate_limit`, `max_clients`).
    pub pending_restart: Vec<&'static str>,
}

/// The supervisor, as the gateway commands it.
#[async_trait]
pub trait Control: Send + Sync + 'static {
    /// The running configuration.
    ///
    /// # Errors
    /// [`ControlError::Unavailable`] if the supervisor is gone.
    async fn config(&self) -> Result<Config, ControlError>;

    /// Validates `config`, saves it atomically and applies it.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] (nothing changed) or
    /// [`ControlError::Internal`] if the file could not be written.
    async fn replace_config(&self, config: Config) -> Result<ApplyReport, ControlError>;

    /// Enables or disables an exchange (toggles when `enabled` is `None`),
    /// saves the config and starts or stops its datasource.
    ///
    /// # Errors
    /// As [`Control::replace_config`].
    async fn toggle_exchange(
        &self,
        exchange: ExchangeId,
        enabled: Option<bool>,
    ) -> Result<ExchangeConfig, ControlError>;

    /// Replaces an exchange's symbols, saves the config and reloads its
    /// datasource (history sync with `reload_progress` messages).
    ///
    /// # Errors
    /// As [`Control::replace_config`].
    async fn set_symbols(
        &self,
        exchange: ExchangeId,
        symbols: Vec<Symbol>,
    ) -> Result<ExchangeConfig, ControlError>;

    /// Re-reads the config file and restarts the datasources and monitor.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] if the file no longer validates (the
    /// running configuration stays).
    async fn restart(&self) -> Result<ApplyReport, ControlError>;

    /// Deletes every stored candle and re-bootstraps the datasources.
    ///
    /// # Errors
    /// [`ControlError::Unavailable`] or [`ControlError::Internal`].
    async fn delete_database(&self) -> Result<(), ControlError>;

    /// The children and their states.
    ///
    /// # Errors
    /// [`ControlError::Unavailable`] if the supervisor is gone.
    async fn status(&self) -> Result<StatusReport, ControlError>;

    /// The symbols an exchange lists.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for an exchange without an adapter,
    /// [`ControlError::Exchange`] if it cannot be asked.
    async fn exchange_symbols(&self, exchange: ExchangeId) -> Result<Vec<Symbol>, ControlError>;

    /// The running configuration's `api_token`, which every mutating
    /// command must present; `None` when the API is open.
    ///
    /// The gateway asks before every mutating request, so this should
    /// answer from a shared cell rather than from a round trip to the
    /// supervisor, and must follow every change of the token
    /// ([`Control::replace_config`], [`Control::restart`]) by the time that
    /// command has answered.
    ///
    /// # Errors
    /// [`ControlError::Unavailable`] if the token cannot be known (the
    /// supervisor is gone); the gateway then refuses the command instead of
    /// letting it through.
    async fn api_token(&self) -> Result<Option<ApiToken>, ControlError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CommonMetrics, MonitorMetrics};

    fn child(metrics: Option<WorkerMetrics>) -> serde_json::Value {
        serde_json::to_value(ChildStatus {
            name: "monitor".into(),
            state: "running".into(),
            restarts: 0,
            last_error: None,
            started_at: None,
            last_heartbeat: None,
            abandoned_threads: 0,
            metrics,
        })
        .unwrap()
    }

    #[test]
    fn metrics_are_the_workers_own_or_an_empty_object_before_a_heartbeat() {
        assert_eq!(child(None)["metrics"], serde_json::json!({}));
        let monitor = MonitorMetrics {
            common: CommonMetrics {
                cpu_user: "0.50".into(),
                heap_used: 1 << 20,
                timestamp: 1_704_277_020_000,
            },
            watched: 3,
            clients: 0,
        };
        assert_eq!(
            child(Some(WorkerMetrics::Monitor(monitor)))["metrics"],
            serde_json::json!({"cpuUser": "0.50", "heapUsed": 1 << 20,
                "timestamp": 1_704_277_020_000_i64, "watched": 3, "clients": 0})
        );
    }
}
