//! One [`MarketSource`] for every real exchange: the REST and live halves
//! of an adapter put together, with the instrument list cached.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

use super::http::RestClient;
use super::live::{self, LiveProtocol};
use crate::source::{CandleStream, ExchangeError, MarketSource};

/// How long a fetched instrument list is used before it is fetched again:
/// listings change a few times a week, and `/exchangeSymbols` and every
/// `POST /exchangeSymbols` check read it.
const SYMBOLS_TTL: Duration = Duration::from_secs(3600);

/// The stream-level silence limit of the datasource for real exchanges: a
/// backstop only, since every connection watches its own silence and
/// reports keep-alive traffic as [`crate::LiveEvent::Alive`].
const MAX_SILENCE: Duration = Duration::from_secs(180);

/// The REST half of an adapter: what differs per exchange.
#[async_trait]
pub(crate) trait RestProtocol: Send + Sync + 'static {
    /// The tradable perpetuals, normalised and sorted.
    async fn symbols(&self, rest: &RestClient) -> Result<Vec<Symbol>, ExchangeError>;

    /// Candles of `symbol`/`interval` opening in `from..=to`, oldest first,
    /// one per open time.
    async fn candles(
        &self,
        rest: &RestClient,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError>;
}

/// A real exchange: its protocol, its REST client and the cached listing.
pub(crate) struct RealExchange<P> {
    id: ExchangeId,
    protocol: Arc<P>,
    rest: RestClient,
    symbols: Mutex<Option<(Instant, Vec<Symbol>)>>,
}

impl<P: RestProtocol + LiveProtocol> RealExchange<P> {
    /// The adapter of `id` speaking `protocol` through `rest`.
    pub fn new(id: ExchangeId, protocol: P, rest: RestClient) -> Self {
        RealExchange {
            id,
            protocol: Arc::new(protocol),
            rest,
            symbols: Mutex::new(None),
        }
    }
}

#[async_trait]
impl<P: RestProtocol + LiveProtocol> MarketSource for RealExchange<P> {
    fn id(&self) -> ExchangeId {
        self.id
    }

    fn max_silence(&self) -> Duration {
        MAX_SILENCE
    }

    /// The listing, fetched at most once per [`SYMBOLS_TTL`]; when a
    /// refresh fails, the last listing is answered (and the failure logged)
    /// rather than failing the caller.
    async fn load_symbols(&self) -> Result<Vec<Symbol>, ExchangeError> {
        let cached = self
            .symbols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((at, symbols)) = &cached {
            if at.elapsed() < SYMBOLS_TTL {
                return Ok(symbols.clone());
            }
        }
        match self.protocol.symbols(&self.rest).await {
            Ok(symbols) => {
                *self.symbols.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), symbols.clone()));
                Ok(symbols)
            }
            Err(error) => match cached {
                Some((_, symbols)) => {
                    tracing::warn!(exchange = %self.id, %error, "instrument list not refreshed; using the last one");
                    Ok(symbols)
                }
                None => Err(error),
            },
        }
    }

    async fn backfill(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let mut candles = self
            .protocol
            .candles(&self.rest, symbol, interval, from, to)
            .await?;
        candles.retain(|c| (from..=to).contains(&c.open_time));
        Ok(candles)
    }

    async fn stream(&self, subscriptions: &[SeriesKey]) -> Result<CandleStream, ExchangeError> {
        if let Some(key) = subscriptions.iter().find(|k| k.exchange != self.id) {
            return Err(ExchangeError::Rejected(format!(
                "{key} is not a {} series",
                self.id
            )));
        }
        live::open(self.protocol.clone(), subscriptions)
    }
}

/// `base` + `path`, without a doubled slash when the configured base ends
/// with one.
pub(crate) fn endpoint(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The next UTC minute boundary from the wall clock: Binance counts
/// request weight per clock minute.
pub(crate) fn until_next_minute() -> Duration {
    let ms = ohlcv_domain::time::now_ms().rem_euclid(60_000);
    Duration::from_millis((60_000 - ms) as u64)
}
