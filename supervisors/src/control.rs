//! The commands of UI clients, executed by the supervisor.
//!
//! [`SupervisorControl`] is what the gateway holds: it turns each
//! [`Control`] call into a message to the supervisor. Commands that change
//! children run as atomic responses, one at a time, so two clients
//! toggling the same exchange cannot interleave a stop and a start.
//!
//! The `api_token` is the exception: the gateway checks it before every
//! mutating request, so it reads the supervisor's [`TokenCell`] directly
//! instead of asking each time.

use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;
use async_trait::async_trait;
use ohlcv_actors::control::{ApplyReport, Control, ControlError, StatusReport};
use ohlcv_domain::config::{ApiToken, Config, ExchangeConfig};
use ohlcv_domain::{ErrorChain, ExchangeId, Symbol};

use crate::supervisor::Supervisor;

/// The running config's `api_token`, shared by the supervisor (which
/// writes it whenever it adopts a config) and every [`SupervisorControl`]
/// (which reads it on each mutating request).
#[derive(Clone, Default)]
pub struct TokenCell(Arc<RwLock<Option<ApiToken>>>);

impl TokenCell {
    /// A cell holding `token`.
    pub fn new(token: Option<ApiToken>) -> Self {
        TokenCell(Arc::new(RwLock::new(token)))
    }

    fn get(&self) -> Option<ApiToken> {
        // Writes replace the value whole, so a poisoned lock is still read.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set(&self, token: Option<ApiToken>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = token;
    }
}

/// The gateway's handle on the supervisor.
#[derive(Clone)]
pub struct SupervisorControl {
    supervisor: Addr<Supervisor>,
    token: TokenCell,
}

impl SupervisorControl {
    /// Commands `supervisor`, whose running `api_token` is in `token`.
    pub fn new(supervisor: Addr<Supervisor>, token: TokenCell) -> Self {
        SupervisorControl { supervisor, token }
    }

    async fn ask<M>(&self, msg: M) -> Result<M::Result, ControlError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Supervisor: Handler<M>,
    {
        self.supervisor
            .send(msg)
            .await
            .map_err(|e| ControlError::Unavailable(format!("supervisor: {e}")))
    }
}

#[async_trait]
impl Control for SupervisorControl {
    async fn config(&self) -> Result<Config, ControlError> {
        self.ask(GetConfig).await
    }

    async fn replace_config(&self, config: Config) -> Result<ApplyReport, ControlError> {
        self.ask(ReplaceConfig(config)).await?
    }

    async fn toggle_exchange(
        &self,
        exchange: ExchangeId,
        enabled: Option<bool>,
    ) -> Result<ExchangeConfig, ControlError> {
        self.ask(ToggleExchange { exchange, enabled }).await?
    }

    async fn set_symbols(
        &self,
        exchange: ExchangeId,
        symbols: Vec<Symbol>,
    ) -> Result<ExchangeConfig, ControlError> {
        self.ask(SetSymbols { exchange, symbols }).await?
    }

    async fn restart(&self) -> Result<ApplyReport, ControlError> {
        self.ask(Restart).await?
    }

    async fn delete_database(&self) -> Result<(), ControlError> {
        self.ask(DeleteDatabase).await?
    }

    async fn status(&self) -> Result<StatusReport, ControlError> {
        self.ask(GetStatus).await
    }

    async fn exchange_symbols(&self, exchange: ExchangeId) -> Result<Vec<Symbol>, ControlError> {
        self.ask(ExchangeSymbols(exchange)).await?
    }

    async fn api_token(&self) -> Result<Option<ApiToken>, ControlError> {
        Ok(self.token.get())
    }
}

/// The running configuration.
#[derive(Message)]
#[rtype(result = "Config")]
struct GetConfig;

/// Save and apply a whole new configuration.
#[derive(Message)]
#[rtype(result = "Result<ApplyReport, ControlError>")]
struct ReplaceConfig(Config);

/// Enable, disable or toggle an exchange.
#[derive(Message)]
#[rtype(result = "Result<ExchangeConfig, ControlError>")]
struct ToggleExchange {
    exchange: ExchangeId,
    enabled: Option<bool>,
}

/// Replace an exchange's symbols.
#[derive(Message)]
#[rtype(result = "Result<ExchangeConfig, ControlError>")]
struct SetSymbols {
    exchange: ExchangeId,
    symbols: Vec<Symbol>,
}

/// Re-read the config file and restart the datasources.
#[derive(Message)]
#[rtype(result = "Result<ApplyReport, ControlError>")]
struct Restart;

/// Delete every candle and re-bootstrap.
#[derive(Message)]
#[rtype(result = "Result<(), ControlError>")]
struct DeleteDatabase;

/// Children and their states.
#[derive(Message)]
#[rtype(result = "StatusReport")]
struct GetStatus;

/// The symbols an exchange lists.
#[derive(Message)]
#[rtype(result = "Result<Vec<Symbol>, ControlError>")]
struct ExchangeSymbols(ExchangeId);

impl Handler<GetConfig> for Supervisor {
    type Result = MessageResult<GetConfig>;

    fn handle(&mut self, _: GetConfig, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.config().clone())
    }
}

impl Handler<GetStatus> for Supervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Supervisor {
    /// Saves `new` and applies it, as one atomic step.
    fn save_and_apply(
        &mut self,
        ctx: &mut Context<Self>,
        new: Config,
    ) -> ResponseActFuture<Self, Result<ApplyReport, ControlError>> {
        if let Err(error) = self.save_config(&new) {
            return Box::pin(fut::ready(Err(error)));
        }
        tracing::info!(path = %self.config_path().display(), "configuration saved");
        Box::pin(self.apply(ctx, new, false).map(|report, _, _| Ok(report)))
    }

    fn exchange_config(&self, exchange: ExchangeId) -> ExchangeConfig {
        self.config()
            .exchanges
            .get(&exchange)
            .cloned()
            .unwrap_or_default()
    }
}

impl Handler<ReplaceConfig> for Supervisor {
    type Result = AtomicResponse<Self, Result<ApplyReport, ControlError>>;

    fn handle(
        &mut self,
        ReplaceConfig(config): ReplaceConfig,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        AtomicResponse::new(self.save_and_apply(ctx, config))
    }
}

impl Handler<ToggleExchange> for Supervisor {
    type Result = AtomicResponse<Self, Result<ExchangeConfig, ControlError>>;

    fn handle(&mut self, msg: ToggleExchange, ctx: &mut Self::Context) -> Self::Result {
        let mut new = self.config().clone();
        let entry = new.exchanges.entry(msg.exchange).or_default();
        entry.enabled = msg.enabled.unwrap_or(!entry.enabled);
        let exchange = msg.exchange;
        AtomicResponse::new(Box::pin(self.save_and_apply(ctx, new).map(
            move |result, act: &mut Supervisor, _| result.map(|_| act.exchange_config(exchange)),
        )))
    }
}

impl Handler<SetSymbols> for Supervisor {
    type Result = AtomicResponse<Self, Result<ExchangeConfig, ControlError>>;

    fn handle(&mut self, msg: SetSymbols, ctx: &mut Self::Context) -> Self::Result {
        let mut new = self.config().clone();
        new.exchanges.entry(msg.exchange).or_default().symbols = msg.symbols;
        let exchange = msg.exchange;
        AtomicResponse::new(Box::pin(self.save_and_apply(ctx, new).map(
            move |result, act: &mut Supervisor, _| result.map(|_| act.exchange_config(exchange)),
        )))
    }
}

impl Handler<Restart> for Supervisor {
    type Result = AtomicResponse<Self, Result<ApplyReport, ControlError>>;

    fn handle(&mut self, _: Restart, ctx: &mut Self::Context) -> Self::Result {
        let new = match self.load_config() {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(%error, "restart refused: the config file does not validate");
                return AtomicResponse::new(Box::pin(fut::ready(Err(error))));
            }
        };
        tracing::info!("restarting datasources");
        AtomicResponse::new(Box::pin(
            self.apply(ctx, new, true).map(|report, _, _| Ok(report)),
        ))
    }
}

impl Handler<DeleteDatabase> for Supervisor {
    type Result = AtomicResponse<Self, Result<(), ControlError>>;

    fn handle(&mut self, _: DeleteDatabase, ctx: &mut Self::Context) -> Self::Result {
        // Stop writers first so nothing lands between the delete and the
        // restart; the datasources then bootstrap their history again.
        let (running, stopped) = self.stop_datasources(ctx);
        let storage = self.storage();
        let work = async move {
            stopped.await;
            storage.clear().await.map_err(|e| {
                ControlError::Internal(format!("database not cleared: {}", ErrorChain(&e)))
            })
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |cleared, act, ctx| {
                if cleared.is_ok() {
                    tracing::info!(success = true, "database cleared");
                }
                act.start_datasources(ctx, running);
                cleared
            },
        )))
    }
}

impl Handler<ExchangeSymbols> for Supervisor {
    type Result = ResponseFuture<Result<Vec<Symbol>, ControlError>>;

    fn handle(
        &mut self,
        ExchangeSymbols(exchange): ExchangeSymbols,
        _: &mut Self::Context,
    ) -> Self::Result {
        let source = self.cached_source(exchange);
        Box::pin(async move {
            let source = source.map_err(|e| ControlError::invalid("exchange_unavailable", e))?;
            source
                .load_symbols()
                .await
                .map_err(|e| ControlError::Exchange(e.to_string()))
        })
    }
}
