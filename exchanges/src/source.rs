//! The datasource interface every exchange adapter implements.
//!
//! An adapter speaks its exchange's protocol: list the symbols, return
//! candles for a time range over REST, and open a live stream of candle
//! updates that it keeps up itself (keep-alive, reconnects per
//! connection). History sync, gap filling, integrity checks, heartbeats and
//! forwarding are the datasource actor's job
//! (`ohlcv_actors::datasource::Datasource`), so every adapter gets them for
//! free and the same way.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};

/// Live events of one exchange, in arrival order: candle updates and what
/// the datasource needs to know about the connections that carry them.
///
/// An adapter that keeps several connections (and reconnects them itself)
/// merges them into one stream, which then ends only when it is dropped;
/// the simulated exchange's stream ends (`None`) when its "connection"
/// drops. An `Err` item reports a frame that could not be used (counted and
/// logged by the datasource) and does not end the stream. Dropping the
/// stream closes every connection.
pub type CandleStream = Pin<Box<dyn Stream<Item = Result<LiveEvent, ExchangeError>> + Send>>;

/// One item of a [`CandleStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A candle update: the open candle as it changes, and each candle once
    /// more with `closed: true` when its interval ends.
    Candle(Candle),
    /// A frame that carried no candle (an acknowledgement, a pong): the
    /// connection is alive even when no series trades.
    Alive,
    /// The exchange refused the live subscription of `key`. The adapter
    /// does not ask again on this stream, so a refused series is not
    /// retried in a loop; a reload subscribes afresh.
    Refused {
        /// The series refused.
        key: SeriesKey,
        /// The exchange's reason.
        reason: String,
    },
    /// One connection broke (or went silent) and is being reopened by the
    /// adapter: its series may miss updates until then, which the
    /// datasource fills over REST.
    Reconnecting {
        /// The series of that connection.
        series: Vec<SeriesKey>,
        /// Why, for the log and `/status`.
        reason: String,
    },
}

/// What can go wrong talking to an exchange.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The connection could not be made or broke.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The exchange answered with an HTTP error status.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The (truncated) response body, for the log.
        body: String,
    },
    /// The exchange asked us to slow down.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long the exchange asked us to wait.
        retry_after: Duration,
    },
    /// A payload did not match the documented format.
    #[error("undecodable payload ({reason}): {raw}")]
    Decode {
        /// What did not match.
        reason: String,
        /// The raw payload, truncated, for the log.
        raw: String,
    },
    /// The exchange refused the request itself (unknown symbol, bad range).
    #[error("rejected by the exchange: {0}")]
    Rejected(String),
}

impl ExchangeError {
    /// Whether trying again later can succeed; a rejected request will not.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ExchangeError::Rejected(_))
    }
}

/// One exchange, as seen by a datasource actor.
///
/// Implementations hold no per-connection state that must survive a
/// datasource restart, except what they deliberately share (the simulated
/// exchange keeps its fault counters so a fault fires once per process).
#[async_trait]
pub trait MarketSource: Send + Sync + 'static {
    /// Which exchange this is.
    fn id(&self) -> ExchangeId;

    /// How long a live stream may deliver nothing before the datasource
    /// treats it as dead and reconnects (a socket can stay open while data
    /// stops).
    fn max_silence(&self) -> Duration;

    /// How many [`backfill`](MarketSource::backfill) requests of
    /// different series a datasource may have in flight at once while it
    /// syncs history. One by default: real exchanges limit request rates,
    /// and one series at a time keeps a bootstrap well within them.
    fn history_concurrency(&self) -> usize {
        1
    }

    /// The symbols the exchange lists, normalised (`BTCUSDT`).
    ///
    /// # Errors
    /// [`ExchangeError`] when the exchange cannot be reached or answers
    /// something undecodable.
    async fn load_symbols(&self) -> Result<Vec<Symbol>, ExchangeError>;

    /// Candles of `symbol`/`interval` whose open time lies in `from..=to`
    /// (UTC ms), oldest first, without duplicates. The candle still forming
    /// is included with `closed: false`. Paging over the exchange's row
    /// limit is the adapter's business; the datasource asks for at most
    /// 10,000 candles at a time.
    ///
    /// # Errors
    /// [`ExchangeError`] on a failed request; candles already fetched are
    /// not returned in that case.
    async fn backfill(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: i64,
        to: i64,
    ) -> Result<Vec<Candle>, ExchangeError>;

    /// Opens a live stream of candle updates for every series in
    /// `subscriptions` (all of this exchange). The exchange sends the open
    /// candle as it changes and each candle once more, with `closed: true`,
    /// when its interval ends.
    ///
    /// # Errors
    /// [`ExchangeError`] when the connection or subscription fails.
    async fn stream(&self, subscriptions: &[SeriesKey]) -> Result<CandleStream, ExchangeError>;
}
