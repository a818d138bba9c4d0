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

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;
use async_trait::async_trait;
use ohlcv_actors::control::{ApplyReport, Control, ControlError, StatusReport};
use ohlcv_domain::config::{ApiToken, Config, ExchangeConfig};
use ohlcv_domain::{ErrorChain, ExchangeId, Symbol};
use ohlcv_exchanges::source::ExchangeError;

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

/// Replace an exchange's symbols; refused unless the exchange lists every
/// one of them.
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

/// Asks the exchange adapter for its listing first (a symbol it does not
/// list would only make the datasource fail over and over), then saves and
/// applies, all as one atomic step: no other command runs in between.
impl Handler<SetSymbols> for Supervisor {
    type Result = AtomicResponse<Self, Result<ExchangeConfig, ControlError>>;

    fn handle(&mut self, msg: SetSymbols, _: &mut Self::Context) -> Self::Result {
        let SetSymbols { exchange, symbols } = msg;
        let source = match self.cached_source(exchange) {
            Ok(source) => source,
            Err(error) => {
                return AtomicResponse::new(Box::pin(fut::ready(Err(ControlError::invalid(
                    "exchange_unavailable",
                    format!(
                        "{exchange}: its symbols cannot be listed, so none were saved: {error}"
                    ),
                )))))
            }
        };
        let listing = async move { source.load_symbols().await };
        AtomicResponse::new(Box::pin(listing.into_actor(self).then(
            move |listed, act: &mut Supervisor, ctx| -> ResponseActFuture<Self, _> {
                if let Err(refused) = check_listed(exchange, &symbols, listed) {
                    tracing::warn!(exchange = %exchange, error = %refused, "symbols refused");
                    return Box::pin(fut::ready(Err(refused)));
                }
                let mut new = act.config().clone();
                new.exchanges.entry(exchange).or_default().symbols = symbols;
                Box::pin(act.save_and_apply(ctx, new).map(
                    move |result, act: &mut Supervisor, _| {
                        result.map(|_| act.exchange_config(exchange))
                    },
                ))
            },
        )))
    }
}

/// Whether `exchange` lists every one of `symbols`, given the answer of its
/// adapter's `load_symbols`.
///
/// # Errors
/// [`ControlError::Invalid`] `unknown_symbol` naming each symbol not
/// listed, with its index in the request; [`ControlError::Exchange`] when
/// the listing could not be fetched, saying that nothing was saved.
fn check_listed(
    exchange: ExchangeId,
    symbols: &[Symbol],
    listed: Result<Vec<Symbol>, ExchangeError>,
) -> Result<(), ControlError> {
    let listed: HashSet<Symbol> = listed
        .map_err(|error| {
            ControlError::Exchange(format!(
                "the symbols {exchange} lists could not be fetched, so none were saved: {error}"
            ))
        })?
        .into_iter()
        .collect();
    let unlisted: Vec<String> = symbols
        .iter()
        .enumerate()
        .filter(|(_, symbol)| !listed.contains(*symbol))
        .map(|(i, symbol)| format!("symbols[{i}]: {symbol} is not listed by {exchange}"))
        .collect();
    if unlisted.is_empty() {
        Ok(())
    } else {
        Err(ControlError::invalid("unknown_symbol", unlisted.join("; ")))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(names: &[&str]) -> Vec<Symbol> {
        names.iter().map(|n| Symbol::new(n).unwrap()).collect()
    }

    #[test]
    fn only_listed_symbols_pass_and_a_failed_listing_says_nothing_was_saved() {
        let exchange = ExchangeId::Simulated;
        let listed = || Ok(symbols(&["BTCUSDT", "ETHUSDT", "SOLUSDT"]));
        assert!(check_listed(exchange, &symbols(&["SOLUSDT", "BTCUSDT"]), listed()).is_ok());
        assert!(check_listed(exchange, &[], listed()).is_ok());

        match check_listed(
            exchange,
            &symbols(&["BTCUSDT", "FOOUSDT", "ETHUSDT", "BARUSDT"]),
            listed(),
        ) {
            Err(ControlError::Invalid { code, message }) => {
                assert_eq!(code, "unknown_symbol");
                assert_eq!(
                    message,
                    "symbols[1]: FOOUSDT is not listed by simulated; \
                     symbols[3]: BARUSDT is not listed by simulated"
                );
            }
            other => panic!("expected unknown_symbol, got {other:?}"),
        }

        let down = Err(ExchangeError::Connect("connection refused".into()));
        match check_listed(exchange, &symbols(&["BTCUSDT"]), down) {
            Err(ControlError::Exchange(message)) => assert_eq!(
                message,
                "the symbols simulated lists could not be fetched, so none were saved: \
                 connection failed: connection refused"
            ),
            other => panic!("expected an exchange error, got {other:?}"),
        }
    }
}
