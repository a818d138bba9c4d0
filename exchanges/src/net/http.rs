//! REST over HTTPS for the exchange adapters: one client per adapter on
//! the shared TLS configuration, every request charged to the exchange's
//! [`RestBudget`], transient failures retried with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::budget::{BudgetLimits, RestBudget};
use super::tls;
use crate::source::ExchangeError;
use ohlcv_domain::ExchangeId;

/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts of one request when it fails transiently (a broken
/// connection, a 5xx): three tries, 250 ms and 1 s apart. Longer outages
/// are the caller's to retry on its own schedule.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];
/// Longest body kept in an error, for the log.
const ERROR_BODY_CHARS: usize = 300;

/// Maps a non-2xx answer (status, `Retry-After` header, body) to the
/// adapter's error: each exchange documents its own codes.
pub(crate) type StatusMapper = fn(u16, Option<&str>, &str) -> ExchangeError;

/// Reads an exchange's rate-limit headers of a successful answer and says
/// how long to pause before the next request, if the budget is nearly
/// spent (e.g. Binance's `X-MBX-USED-WEIGHT-1M`).
pub(crate) type UsageReader = fn(&HeaderMap) -> Option<Duration>;

/// The REST side of one adapter.
#[derive(Debug, Clone)]
pub(crate) struct RestClient {
    http: reqwest::Client,
    budget: Arc<RestBudget>,
    map_status: StatusMapper,
    read_usage: UsageReader,
}

impl RestClient {
    /// A client for `exchange` at `rest_url`, sharing that endpoint's
    /// process-wide budget.
    ///
    /// # Errors
    /// [`ExchangeError::Connect`] when TLS cannot be set up.
    pub fn new(
        exchange: ExchangeId,
        rest_url: &str,
        limits: BudgetLimits,
        map_status: StatusMapper,
        read_usage: UsageReader,
    ) -> Result<RestClient, ExchangeError> {
        let tls = tls::client_config()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ohlcv-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExchangeError::Connect(format!("HTTP client: {e}")))?;
        Ok(RestClient {
            http,
            budget: RestBudget::shared(exchange, rest_url, limits),
            map_status,
            read_usage,
        })
    }

    /// `GET url`, charged `weight`: the body of a 2xx answer.
    ///
    /// A `429`/`418` (or any error the status mapper calls rate limiting)
    /// pauses the whole exchange's budget for the time given and is
    /// returned at once; connection failures and 5xx are retried twice.
    ///
    /// # Errors
    /// The mapped [`ExchangeError`] of the last attempt.
    pub async fn get(&self, url: &str, weight: u32) -> Result<String, ExchangeError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let error = match self.attempt(url, weight).await {
                Ok(body) => return Ok(body),
                Err(error) => error,
            };
            self.note(&error);
            let transient = matches!(
                error,
                ExchangeError::Connect(_) | ExchangeError::Http { status: 500.., .. }
            );
            match delays.next() {
                Some(delay) if transient => {
                    tracing::debug!(%url, %error, "REST request failed; retrying");
                    tokio::time::sleep(*delay).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Pauses the budget when `error` is the exchange asking us to slow
    /// down. Adapters call it for rate limits reported inside a 200 body
    /// (Bybit's `retCode` 10006) too.
    pub fn note(&self, error: &ExchangeError) {
        if let ExchangeError::RateLimited { retry_after } = error {
            tracing::warn!(
                retry_after_ms = retry_after.as_millis() as u64,
                "exchange rate limit hit; pausing every request to it"
            );
            self.budget.pause(Instant::now(), *retry_after);
        }
    }

    async fn attempt(&self, url: &str, weight: u32) -> Result<String, ExchangeError> {
        self.budget.acquire(weight).await;
        let response =
            self.http.get(url).send().await.map_err(|e| {
                ExchangeError::Connect(format!("GET {}: {}", path_of(url), chain(&e)))
            })?;
        let status = response.status().as_u16();
        if let Some(pause) = (self.read_usage)(response.headers()) {
            self.budget.pause(Instant::now(), pause);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .map_err(|e| ExchangeError::Connect(format!("GET {}: {}", path_of(url), chain(&e))))?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            let body: String = body.chars().take(ERROR_BODY_CHARS).collect();
            Err((self.map_status)(status, retry_after.as_deref(), &body))
        }
    }
}

/// The path of `url`, without the host, for short log lines.
fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

/// The error and its causes on one line (reqwest hides the useful part, a
/// refused connection or a certificate problem, in the source chain).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    ohlcv_domain::ErrorChain(error).to_string()
}
