//! The HTTP routes of seed 004, JSON in and out.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /status` | the supervisor's [`StatusReport`](crate::control::StatusReport) |
//! | `GET /config`, `POST /config` | the running config; replace it with a whole new one |
//! | `GET /exchanges` | the config's `exchanges` object |
//! | `GET /exchangeSymbols/{exchange}` | the symbols the exchange lists |
//! | `POST /exchangeSymbols` | set an exchange's symbols, each one it lists (checked by the supervisor) |
//! | `POST /toggleExchange` | enable, disable or toggle an exchange |
//! | `GET /ohlcv/{exchange}/{symbol}/{interval}?from&to&limit` | candles, ascending |
//! | `POST /restart` | re-read the config file and restart the datasources |
//! | `POST /deleteDatabase` | delete every stored candle |
//! | `GET /databaseSymbols` | the series stored, with counts and time ranges |
//! | `GET /completeness?exchange&symbol&interval` | per stored series: expected, stored and missing candles, exchange holes, age of the newest closed candle |
//! | `GET /openapi.json` | the OpenAPI description of these routes (see [`super::openapi`]) |
//! | `GET /ws` | the WebSocket (see [`super::ws`]) |
//! | `GET /`, `/client.js`, `/assets/{name}` | the dashboard (see [`super::assets`]) |
//!
//! [`ROUTES`] lists every path and its methods; the routes are registered
//! from it, and the tests hold the OpenAPI document to it.
//!
//! Every input is validated here, before the supervisor or the storage
//! thread sees it, and every failure is an [`ApiError`]. Every JSON body is
//! read as [`UniqueKeys`], the parser of the config file, so a body that
//! lists a key twice is refused as the file would be. Commands go to
//! the supervisor through [`Control`](crate::control::Control); reads go
//! straight to the storage thread.
//!
//! When the config sets `api_token`, every mutating route (the `POST`s)
//! requires `Authorization: Bearer <api_token>`, checked before the body
//! is even read: none gets 401 `unauthorized`, a wrong one 403
//! `forbidden`. Reads and `/health` stay open. The token is never shown:
//! `GET /config` answers [`API_TOKEN_MASK`] in its place. Without an
//! `api_token`, the mutating routes are accepted only from loopback peers
//! (see `authorize`).
//!
//! Every route sits behind the [`security`](super::security) middleware
//! (Host, Origin, CORS, form bodies, rate limit), and `POST /config` may not
//! change the simulated exchange's faults (400 `faults_not_settable`).
//!
//! The two answers that grow with the data, `/ohlcv` and
//! `/databaseSymbols`, go out through [`json_answer`]: gzip at
//! [`GZIP_LEVEL`] when the client accepts it and the body is at least
//! [`GZIP_MIN_BODY`], identity otherwise, `Vary: Accept-Encoding` either
//! way. No `Compress` middleware wraps the app, so nothing encodes twice
//! (actix's would pass an answer with `Content-Encoding` through anyway).

use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, ContentType, HeaderMap};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use ohlcv_domain::config::{check_symbols, Config, ExchangeConfig, SymbolListError};
use ohlcv_domain::json::UniqueKeys;
use ohlcv_domain::{Candle, ExchangeId, Interval, SeriesKey, Symbol};
use ohlcv_storage::{CandleQuery, SeriesCompleteness, SeriesSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::answers::{
    ConfigReplaced, Deleted, ExchangeSymbols, ExchangeToggled, Health, Restarted,
    SetSymbolsRequest, SymbolsSet, ToggleRequest,
};
use super::candles_json;
use super::errors::{json_config, path_config, query_config, ApiError, Envelope};
use super::openapi;
use super::security::{guard, is_local, Security};
use super::ws::{self, SessionClosing};
use super::GatewayDeps;
use crate::control::{ControlError, StatusReport};
use crate::storage::StorageRequestError;

/// Candles `/ohlcv` returns when the request names no `limit`; the seed's
/// default, about a chart's width of candles.
pub const DEFAULT_OHLCV_LIMIT: usize = 1000;

/// Most candles one `/ohlcv` request may ask for. Keeps one answer under
/// ~600 KB of JSON and one read short on the storage thread, which also
/// writes the batches; a chart that wants more pages with `from`.
pub const MAX_OHLCV_LIMIT: usize = 5000;

/// Longest a route waits for the supervisor. Commands are quick (starting
/// or stopping actors, writing a small file); one that takes this long
/// means the supervisor is stuck, and the client gets a 503 rather than a
/// connection that hangs forever. The command itself is not cancelled.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a route waits for the storage thread. A read takes
/// milliseconds; the thread may be in the middle of a batch write, which
/// takes well under a second. Far beyond that it is stuck, and the client
/// gets a 503 instead of a request that never ends.
pub const STORAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `GET /config` (and the answer of `POST /config`) shows in place of
/// a configured `api_token`, so that the secret never travels back to a
/// client. A `POST /config` may send it back unchanged to keep the token in
/// force, so a UI can read the config, edit it and post it back without
/// knowing the token.
pub const API_TOKEN_MASK: &str = "***";

/// How an HTTP client presents the token, for the 401 message.
const HTTP_TOKEN_HINT: &str = "send the header `Authorization: Bearer <api_token>`";

/// Shared state of every route.
type Deps = web::Data<GatewayDeps>;

/// Registers every route, the extractor error handlers and the JSON 404,
/// all behind the [`security`](super::security) middleware.
pub(crate) fn configure(
    cfg: &mut web::ServiceConfig,
    deps: GatewayDeps,
    closing: SessionClosing,
    security: Arc<Security>,
) {
    cfg.app_data(web::Data::new(deps))
        .app_data(web::Data::new(closing))
        .app_data(web::Data::from(security.clone()))
        .app_data(json_config())
        .app_data(path_config())
        .app_data(query_config())
        .configure(|cfg| super::assets::configure(cfg, &security))
        .service(
            routes().wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
                guard(security.clone(), req, next)
            })),
        );
}

/// Every route the server answers: its path and its methods. The one list
/// of them: [`routes`] registers each path through [`resource`], which
/// takes the methods (for the 405's `Allow`) from here, and the tests hold
/// both the routes the server answers and the OpenAPI document
/// ([`openapi`](super::openapi)) to it.
pub(crate) const ROUTES: &[(&str, &[&str])] = &[
    ("/health", &["GET"]),
    ("/status", &["GET"]),
    ("/config", &["GET", "POST"]),
    ("/exchanges", &["GET"]),
    ("/exchangeSymbols/{exchange}", &["GET"]),
    ("/exchangeSymbols", &["POST"]),
    ("/toggleExchange", &["POST"]),
    ("/ohlcv/{exchange}/{symbol}/{interval}", &["GET"]),
    ("/restart", &["POST"]),
    ("/deleteDatabase", &["POST"]),
    ("/databaseSymbols", &["GET"]),
    ("/completeness", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/ws", &["GET"]),
];

/// Every route, in one scope so that one middleware covers them all (the
/// 404 included).
fn routes() -> actix_web::Scope {
    web::scope("")
        .service(resource("/health").route(web::get().to(health)))
        .service(resource("/status").route(web::get().to(status)))
        .service(
            resource("/config")
                .route(web::get().to(get_config))
                .route(protected(web::post().to(post_config))),
        )
        .service(resource("/exchanges").route(web::get().to(exchanges)))
        .service(resource("/exchangeSymbols/{exchange}").route(web::get().to(exchange_symbols)))
        .service(resource("/exchangeSymbols").route(protected(web::post().to(set_symbols))))
        .service(resource("/toggleExchange").route(protected(web::post().to(toggle_exchange))))
        .service(resource("/ohlcv/{exchange}/{symbol}/{interval}").route(web::get().to(ohlcv)))
        .service(resource("/restart").route(protected(web::post().to(restart))))
        .service(resource("/deleteDatabase").route(protected(web::post().to(delete_database))))
        .service(resource("/databaseSymbols").route(web::get().to(database_symbols)))
        .service(resource("/completeness").route(web::get().to(completeness)))
        .service(resource("/openapi.json").route(web::get().to(openapi::document)))
        .service(resource("/ws").route(web::get().to(ws::upgrade)))
        .default_service(web::to(not_found))
}

/// A route of [`ROUTES`] whose other methods get a JSON 405 with an
/// `Allow` header (actix-web's own 405 has an empty body).
///
/// # Panics
/// If `path` is not in [`ROUTES`]: a route added without its entry there
/// would be missing from the OpenAPI document. Every test that builds the
/// app finds it.
fn resource(path: &'static str) -> actix_web::Resource {
    let allowed = ROUTES
        .iter()
        .find(|(route, _)| *route == path)
        .map(|(_, methods)| *methods)
        .unwrap_or_else(|| panic!("route {path} is not listed in http::ROUTES"));
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::method_not_allowed(
            req.method().as_str(),
            req.path(),
            allowed,
        ))
    }))
}

/// A mutating route: it runs only for a request that presents the
/// `api_token` (when one is set). The check wraps the handler, so it comes
/// before the body is read: a client without the token learns nothing
/// from how its body would have been judged.
fn protected(route: actix_web::Route) -> actix_web::Route {
    route.wrap(from_fn(require_token))
}

/// The middleware of [`protected`]. A refusal is answered here as a
/// response (not returned as an error), so it reaches the client in the
/// same shape as any other error, whatever wraps the app.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let checked = match req.app_data::<Deps>() {
        Some(deps) => {
            let what = format!("{} {}", req.method(), req.path());
            let peer = req.peer_addr().map(|addr| addr.ip());
            authorize(
                deps,
                bearer_token(req.headers()),
                peer,
                &what,
                HTTP_TOKEN_HINT,
            )
            .await
        }
        // `configure` always registers the deps; refuse rather than open.
        None => Err(ApiError::unavailable("the gateway is not configured")),
    };
    match checked {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refused) => Ok(req.error_response(refused).map_into_right_body()),
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request
/// has one. The scheme is case-insensitive (RFC 7235); any other scheme,
/// or an empty token, counts as no token.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let split = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

/// Lets `what` (`POST /config`, the `reload` command) through if
/// `presented` is the running config's `api_token`, or if the config has
/// none and the request comes from `peer` on the machine itself (a
/// loopback address): without a token, whoever reaches the port must not
/// be able to change what is collected or delete the data. `peer` is the
/// TCP peer's address, `None` when unknown (which counts as remote).
///
/// # Errors
/// 401 `unauthorized` (with `hint`: how to present it) when a token is set
/// and none was presented, 403 `forbidden` when the presented one is wrong
/// or when no token is set and `peer` is not loopback, 503 `unavailable`
/// when the token cannot be known: the check fails closed.
pub(crate) async fn authorize(
    deps: &GatewayDeps,
    presented: Option<&[u8]>,
    peer: Option<IpAddr>,
    what: &str,
    hint: &str,
) -> Result<(), ApiError> {
    let Some(token) = ask(deps.control.api_token()).await? else {
        if is_local(peer) {
            return Ok(());
        }
        let from = peer.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
        tracing::warn!(what, peer = %from, "refused: no api_token, and the peer is remote");
        return Err(ApiError::forbidden(format!(
            "{what} from {from} refused: without an api_token, changes are accepted only \
             from this machine (loopback); set api_token in the config file to allow remote \
             control"
        )));
    };
    match presented {
        None => Err(ApiError::unauthorized(format!(
            "{what} needs the api_token: {hint}"
        ))),
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => {
            // Worth a line: someone tries tokens. The token tried is not
            // logged, it may be a real one sent to the wrong server.
            tracing::warn!(what, "refused: the token presented is not the api_token");
            Err(ApiError::forbidden(format!(
                "{what}: the token presented is not the api_token"
            )))
        }
    }
}

/// The config as clients see it: the `api_token`, when one is set, as
/// [`API_TOKEN_MASK`].
pub(crate) fn masked_config(config: &Config) -> Value {
    let mut value = to_value(config);
    if let Some(token) = value.get_mut("api_token") {
        *token = Value::from(API_TOKEN_MASK);
    }
    value
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(req.method().as_str(), req.path()))
}

/// Asks the supervisor, giving up after [`CONTROL_TIMEOUT`].
pub(crate) async fn ask<T>(
    command: impl Future<Output = Result<T, ControlError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(CONTROL_TIMEOUT, command).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::unavailable(format!(
            "the supervisor did not answer within {} s",
            CONTROL_TIMEOUT.as_secs()
        ))),
    }
}

/// Asks the storage thread, giving up after [`STORAGE_TIMEOUT`].
pub(crate) async fn read<T>(
    request: impl Future<Output = Result<T, StorageRequestError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(STORAGE_TIMEOUT, request).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::unavailable(format!(
            "storage did not answer within {} s",
            STORAGE_TIMEOUT.as_secs()
        ))),
    }
}

/// Whether the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 200, description = "The process answers HTTP", body = Health)))]
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The supervisor's report: uptime, threads, every child and its metrics.
#[utoipa::path(get, path = "/status", tag = "system",
    responses(
        (status = 200, description = "Uptime, threads and every supervised child", body = StatusReport),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn status(deps: Deps) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(status_value(&deps).await?))
}

/// The answer of `GET /status` and the `status` command.
pub(crate) async fn status_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    let report = ask(deps.control.status()).await?;
    Ok(to_value(&report))
}

/// The running config.
#[utoipa::path(get, path = "/config", tag = "config",
    responses(
        (status = 200, description = "The running config, its `api_token` shown as `***`", body = Config),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn get_config(deps: Deps) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(config_value(&deps).await?))
}

/// The answer of `GET /config` and the `config` request.
pub(crate) async fn config_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    let config = ask(deps.control.config()).await?;
    Ok(masked_config(&config))
}

/// Replaces the whole config: validated, saved, applied.
///
/// The body's `api_token` decides the token: absent, it is removed; `***`
/// ([`API_TOKEN_MASK`]), the current one is kept; any other value
/// replaces it.
#[utoipa::path(post, path = "/config", tag = "config",
    request_body(content = Config, description = "The whole new config; `api_token` `***` keeps the current token, absent removes it"),
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "Validated, saved and applied", body = ConfigReplaced),
        (status = 400, description = "`invalid_config`, `faults_not_settable` (the simulated `faults` are set in the file), or `bad_request`", body = Envelope),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = Envelope),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope),
        (status = 500, description = "`internal`: the config file could not be written", body = Envelope)
    ))]
pub(super) async fn post_config(
    deps: Deps,
    body: web::Json<UniqueKeys>,
) -> Result<HttpResponse, ApiError> {
    let UniqueKeys(body) = body.into_inner();
    Ok(HttpResponse::Ok().json(set_config_value(&deps, body).await?))
}

/// The answer of `POST /config` and the `setConfig` request, for the new
/// config `body`.
pub(crate) async fn set_config_value(
    deps: &GatewayDeps,
    mut body: Value,
) -> Result<Value, ApiError> {
    let keep_token = body.get("api_token").and_then(Value::as_str) == Some(API_TOKEN_MASK);
    if keep_token {
        if let Some(object) = body.as_object_mut() {
            object.remove("api_token");
        }
    }
    let mut config = Config::from_value(body)
        .map_err(|error| ApiError::bad_request("invalid_config", error.to_string()))?;
    let running = ask(deps.control.config()).await?;
    check_faults_unchanged(&running, &config)?;
    if keep_token {
        config.api_token = ask(deps.control.api_token()).await?;
    }
    let applied = ask(deps.control.replace_config(config.clone())).await?;
    Ok(to_value(&ConfigReplaced {
        config: masked_config(&config),
        applied,
    }))
}

/// Refuses a config whose simulated faults differ from the running ones.
/// Faults crash, block or silence datasources on purpose: a test switches
/// them on by editing the config file (and `POST /restart`), never through
/// the API, where a page or a client with the token could turn a
/// collector's own datasource into a fault generator.
///
/// # Errors
/// 400 `faults_not_settable`, naming the key.
fn check_faults_unchanged(running: &Config, new: &Config) -> Result<(), ApiError> {
    let faults = |config: &Config, exchange: ExchangeId| {
        config
            .exchanges
            .get(&exchange)
            .and_then(|e| e.simulation.as_ref())
            .map(|s| s.faults.clone())
            .unwrap_or_default()
    };
    match ExchangeId::ALL
        .into_iter()
        .find(|id| faults(running, *id) != faults(new, *id))
    {
        None => Ok(()),
        Some(exchange) => Err(ApiError::bad_request(
            "faults_not_settable",
            format!(
                "exchanges.{exchange}.simulation.faults: faults cannot be changed through the \
                 API; they are set in the config file (then POST /restart re-reads it)"
            ),
        )),
    }
}

/// The `exchanges` part of the running config.
#[utoipa::path(get, path = "/exchanges", tag = "config",
    responses(
        (status = 200, description = "The config's `exchanges` object, keyed by exchange id", body = BTreeMap<ExchangeId, ExchangeConfig>),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn exchanges(deps: Deps) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(exchanges_value(&deps).await?))
}

/// The answer of `GET /exchanges` and the `exchanges` request.
pub(crate) async fn exchanges_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    let config = ask(deps.control.config()).await?;
    Ok(to_value(&config.exchanges))
}

/// The symbols an exchange lists.
#[utoipa::path(get, path = "/exchangeSymbols/{exchange}", tag = "config",
    params(("exchange" = ExchangeId, Path, description = "The exchange to ask")),
    responses(
        (status = 200, description = "The symbols the exchange lists", body = ExchangeSymbols),
        (status = 400, description = "`unknown_exchange`, or `exchange_unavailable` (no adapter in this version)", body = Envelope),
        (status = 502, description = "`exchange_error`: the exchange could not be asked", body = Envelope),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn exchange_symbols(
    deps: Deps,
    exchange: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(exchange_symbols_value(&deps, &exchange).await?))
}

/// The answer of `GET /exchangeSymbols/{exchange}` and the
/// `exchangeSymbols` request.
pub(crate) async fn exchange_symbols_value(
    deps: &GatewayDeps,
    exchange: &str,
) -> Result<Value, ApiError> {
    let exchange = parse_exchange(exchange, "exchange")?;
    let symbols = ask(deps.control.exchange_symbols(exchange)).await?;
    Ok(to_value(&ExchangeSymbols { exchange, symbols }))
}

/// Sets an exchange's symbols, each one it lists; saves and reloads it.
#[utoipa::path(post, path = "/exchangeSymbols", tag = "config",
    request_body = SetSymbolsRequest,
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "Saved; the datasource reloads and syncs history (`reload_progress`)", body = SymbolsSet),
        (status = 400, description = "`unknown_exchange`, `invalid_symbol`, `unknown_symbol` (not listed by the exchange), `duplicate_symbol`, `too_many_symbols`, `exchange_unavailable` or `bad_request`", body = Envelope),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = Envelope),
        (status = 502, description = "`exchange_error`: the listing could not be fetched; nothing saved", body = Envelope),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn set_symbols(
    deps: Deps,
    body: web::Json<UniqueKeys>,
) -> Result<HttpResponse, ApiError> {
    let UniqueKeys(body) = body.into_inner();
    Ok(HttpResponse::Ok().json(set_symbols_value(&deps, &body).await?))
}

/// The answer of `POST /exchangeSymbols` and the `setSymbols` request.
pub(crate) async fn set_symbols_value(deps: &GatewayDeps, body: &Value) -> Result<Value, ApiError> {
    let (exchange, symbols) = parse_set_symbols(body)?;
    let config = ask(deps.control.set_symbols(exchange, symbols)).await?;
    Ok(to_value(&SymbolsSet { exchange, config }))
}

/// Enables, disables or toggles an exchange; saves, then starts or stops
/// its datasource.
#[utoipa::path(post, path = "/toggleExchange", tag = "config",
    request_body = ToggleRequest,
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "Saved; the datasource starts or stops", body = ExchangeToggled),
        (status = 400, description = "`unknown_exchange`, `exchange_unavailable`, `invalid_config` or `bad_request`", body = Envelope),
        (status = 413, description = "`payload_too_large`: over 64 KiB", body = Envelope),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn toggle_exchange(
    deps: Deps,
    body: web::Json<UniqueKeys>,
) -> Result<HttpResponse, ApiError> {
    let UniqueKeys(body) = body.into_inner();
    Ok(HttpResponse::Ok().json(toggle_value(&deps, &body).await?))
}

/// The answer of `POST /toggleExchange` and the `toggleExchange` request.
pub(crate) async fn toggle_value(deps: &GatewayDeps, body: &Value) -> Result<Value, ApiError> {
    let (exchange, enabled) = parse_toggle(body)?;
    let config = ask(deps.control.toggle_exchange(exchange, enabled)).await?;
    Ok(to_value(&ExchangeToggled {
        exchange,
        enabled: config.enabled,
        config,
    }))
}

/// The query string of `/ohlcv`, kept as text so that each bad value gets
/// its own error code instead of a generic deserialisation error.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OhlcvParams {
    /// Oldest open time, UTC ms, inclusive. With it: the first `limit`
    /// candles from it; without: the latest `limit`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub(crate) from: Option<String>,
    /// Newest open time, UTC ms, inclusive.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub(crate) to: Option<String>,
    /// Most candles to answer, 1 to 5000; 1000 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 5000)]
    pub(crate) limit: Option<String>,
}

/// The candles of one series, oldest first.
#[utoipa::path(get, path = "/ohlcv/{exchange}/{symbol}/{interval}", tag = "candles",
    params(
        ("exchange" = ExchangeId, Path, description = "Exchange id"),
        ("symbol" = Symbol, Path, description = "Normalised symbol"),
        ("interval" = Interval, Path, description = "Interval name"),
        OhlcvParams
    ),
    responses(
        (status = 200, description = "Candles, oldest first; those not yet written to disk included", body = Vec<OhlcvRow>),
        (status = 400, description = "`unknown_exchange`, `invalid_symbol`, `unknown_interval`, `bad_range`, `bad_limit` or `bad_request`", body = Envelope),
        (status = 503, description = "`unavailable`: the storage thread is busy or restarting", body = Envelope),
        (status = 500, description = "`storage_error`: the database failed", body = Envelope)
    ))]
pub(super) async fn ohlcv(
    req: HttpRequest,
    deps: Deps,
    path: web::Path<(String, String, String)>,
    params: web::Query<OhlcvParams>,
) -> Result<HttpResponse, ApiError> {
    let (exchange, symbol, interval) = path.into_inner();
    let candles = ohlcv_candles(&deps, [&exchange, &symbol, &interval], &params).await?;
    // Straight from the candles: the same bytes as serde_json over the
    // `OhlcvRow`s, without building them (see `candles_json`).
    Ok(json_answer(&req, candles_json::write_rows(&candles)))
}

/// The candles of `GET /ohlcv/{exchange}/{symbol}/{interval}`, validated
/// and read from storage; the HTTP route writes them as JSON itself.
async fn ohlcv_candles(
    deps: &GatewayDeps,
    [exchange, symbol, interval]: [&str; 3],
    params: &OhlcvParams,
) -> Result<Vec<Candle>, ApiError> {
    let (key, query) = parse_ohlcv(exchange, symbol, interval, params)?;
    read(deps.storage.candles(key, query)).await
}

/// The candles of the WebSocket `ohlcv` request, as rows: that answer is
/// one value inside a message, encoded as JSON or MessagePack by the
/// session.
pub(crate) async fn ohlcv_rows(
    deps: &GatewayDeps,
    series: [&str; 3],
    params: &OhlcvParams,
) -> Result<Vec<OhlcvRow>, ApiError> {
    let candles = ohlcv_candles(deps, series, params).await?;
    Ok(candles.iter().map(OhlcvRow::from).collect())
}

/// One candle of `/ohlcv`, with the column names of the seed's `ohlcv`
/// table. The series (exchange, symbol, interval) is not repeated in every
/// row: it is in the URL.
///
/// ```json
/// {"timestamp":1704277020000,"open":50000.0,"high":50100.0,"low":49900.0,
///  "close":50050.0,"volume":100.5,"closed":true}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OhlcvRow {
    /// Open time, UTC ms.
    pub timestamp: i64,
    /// First traded price of the interval.
    pub open: f64,
    /// Highest traded price.
    pub high: f64,
    /// Lowest traded price.
    pub low: f64,
    /// Last traded price (so far, while open).
    pub close: f64,
    /// Traded volume in the base asset.
    pub volume: f64,
    /// Whether the candle is final.
    pub closed: bool,
}

impl From<&Candle> for OhlcvRow {
    fn from(c: &Candle) -> Self {
        OhlcvRow {
            timestamp: c.open_time,
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            closed: c.closed,
        }
    }
}

/// Re-reads the config file and restarts the datasources.
#[utoipa::path(post, path = "/restart", tag = "system",
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "The config file was re-read and the datasources restarted", body = Restarted),
        (status = 400, description = "`invalid_config`: the file no longer validates; the running config stays", body = Envelope),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope)
    ))]
pub(super) async fn restart(deps: Deps) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(restart_value(&deps).await?))
}

/// The answer of `POST /restart` and the `reload` command.
pub(crate) async fn restart_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    let applied = ask(deps.control.restart()).await?;
    Ok(to_value(&Restarted {
        restarted: true,
        applied,
    }))
}

/// Deletes every stored candle; the datasources bootstrap history anew.
#[utoipa::path(post, path = "/deleteDatabase", tag = "candles",
    security((), ("api_token" = [])),
    responses(
        (status = 200, description = "Every candle deleted; the datasources bootstrap history anew", body = Deleted),
        (status = 503, description = "`unavailable`: the supervisor did not answer in time", body = Envelope),
        (status = 500, description = "`internal`: the database refused", body = Envelope)
    ))]
pub(super) async fn delete_database(deps: Deps) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(delete_value(&deps).await?))
}

/// The answer of `POST /deleteDatabase` and the `deleteDatabase` request.
pub(crate) async fn delete_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    ask(deps.control.delete_database()).await?;
    Ok(to_value(&Deleted { deleted: true }))
}

/// The series stored, with counts and time ranges.
#[utoipa::path(get, path = "/databaseSymbols", tag = "candles",
    responses(
        (status = 200, description = "Every stored series, with counts and time ranges", body = Vec<SeriesRow>),
        (status = 503, description = "`unavailable`: the storage thread is busy or restarting", body = Envelope),
        (status = 500, description = "`storage_error`: the database failed", body = Envelope)
    ))]
pub(super) async fn database_symbols(
    req: HttpRequest,
    deps: Deps,
) -> Result<HttpResponse, ApiError> {
    let series = series_value(&deps).await?;
    Ok(json_answer(&req, to_json_bytes(&series)))
}

/// One stored series, as `/databaseSymbols` and the `list` command show it.
///
/// ```json
/// {"exchange":"simulated","symbol":"BTCUSDT","interval":"1m",
///  "count":1440,"first":1704153600000,"last":1704239940000}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeriesRow {
    /// Exchange id.
    pub exchange: ExchangeId,
    /// Normalised symbol.
    pub symbol: Symbol,
    /// Interval name.
    pub interval: Interval,
    /// Candles stored (and queued).
    pub count: u64,
    /// Open time of the oldest candle, UTC ms.
    pub first: i64,
    /// Open time of the newest candle, UTC ms.
    pub last: i64,
}

impl From<SeriesSummary> for SeriesRow {
    fn from(s: SeriesSummary) -> Self {
        SeriesRow {
            exchange: s.key.exchange,
            symbol: s.key.symbol,
            interval: s.key.interval,
            count: s.count,
            first: s.first,
            last: s.last,
        }
    }
}

/// The answer of `GET /databaseSymbols` and the `list` command.
pub(crate) async fn series_value(deps: &GatewayDeps) -> Result<Value, ApiError> {
    let series = read(deps.storage.series()).await?;
    let rows: Vec<SeriesRow> = series.into_iter().map(SeriesRow::from).collect();
    Ok(to_value(&rows))
}

/// The query string of `/completeness`: each given filter keeps only the
/// series that match it. Kept as text, validated as `/ohlcv`'s path is.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CompletenessParams {
    /// Only the series of this exchange.
    #[param(value_type = Option<ExchangeId>)]
    pub(crate) exchange: Option<String>,
    /// Only the series of this symbol.
    #[param(value_type = Option<Symbol>)]
    pub(crate) symbol: Option<String>,
    /// Only the series of this interval.
    #[param(value_type = Option<Interval>)]
    pub(crate) interval: Option<String>,
}

/// The filters of `/completeness`, parsed; `None` matches every series.
#[derive(Debug, Default, PartialEq)]
struct CompletenessFilter {
    exchange: Option<ExchangeId>,
    symbol: Option<Symbol>,
    interval: Option<Interval>,
}

impl CompletenessFilter {
    fn matches(&self, key: &SeriesKey) -> bool {
        self.exchange.is_none_or(|e| e == key.exchange)
            && self.symbol.as_ref().is_none_or(|s| *s == key.symbol)
            && self.interval.is_none_or(|i| i == key.interval)
    }
}

/// How complete one stored series is, as `/completeness` shows it (see
/// [`SeriesCompleteness`]). Times are UTC ms; the `newest_closed_*` fields
/// are `null` while no candle of the series is closed.
///
/// ```json
/// {"exchange":"simulated","symbol":"BTCUSDT","interval":"1m",
///  "first_open_time":1704153600000,"last_open_time":1704239940000,
///  "expected":1440,"stored":1436,"missing":1,"exchange_holes":1,
///  "exchange_hole_candles":3,"newest_closed_open_time":1704239880000,
///  "newest_closed_age_ms":2500}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletenessRow {
    /// Exchange id.
    pub exchange: ExchangeId,
    /// Normalised symbol.
    pub symbol: Symbol,
    /// Interval name.
    pub interval: Interval,
    /// Open time of the oldest candle.
    pub first_open_time: i64,
    /// Open time of the newest candle.
    pub last_open_time: i64,
    /// Candles from the oldest to the newest, both included.
    pub expected: u64,
    /// Candles stored.
    pub stored: u64,
    /// Candles neither stored nor in an exchange hole: still to fetch.
    pub missing: u64,
    /// Ranges the exchange itself has no candles for.
    pub exchange_holes: u64,
    /// Open times inside those ranges.
    pub exchange_hole_candles: u64,
    /// Open time of the newest closed candle.
    pub newest_closed_open_time: Option<i64>,
    /// Milliseconds since that candle closed.
    pub newest_closed_age_ms: Option<i64>,
}

impl From<SeriesCompleteness> for CompletenessRow {
    fn from(c: SeriesCompleteness) -> Self {
        CompletenessRow {
            exchange: c.key.exchange,
            symbol: c.key.symbol,
            interval: c.key.interval,
            first_open_time: c.first_open_time,
            last_open_time: c.last_open_time,
            expected: c.expected,
            stored: c.stored,
            missing: c.missing,
            exchange_holes: c.exchange_holes,
            exchange_hole_candles: c.exchange_hole_candles,
            newest_closed_open_time: c.newest_closed_open_time,
            newest_closed_age_ms: c.newest_closed_age_ms,
        }
    }
}

/// How complete each stored series is.
///
/// Every stored series (or those matching the filters), sorted by
/// exchange, symbol and interval. Like
/// `/databaseSymbols`, straight from the storage thread, which writes its
/// queue first so that queued candles count as stored.
#[utoipa::path(get, path = "/completeness", tag = "candles",
    params(CompletenessParams),
    responses(
        (status = 200, description = "How complete each stored series is, sorted by exchange, symbol and interval", body = Vec<CompletenessRow>),
        (status = 400, description = "`unknown_exchange`, `invalid_symbol` or `unknown_interval`", body = Envelope),
        (status = 503, description = "`unavailable`: the storage thread is busy or restarting", body = Envelope),
        (status = 500, description = "`storage_error`: the database failed", body = Envelope)
    ))]
pub(super) async fn completeness(
    deps: Deps,
    params: web::Query<CompletenessParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(completeness_value(&deps, &params).await?))
}

/// The answer of `GET /completeness` and the `completeness` request.
pub(crate) async fn completeness_value(
    deps: &GatewayDeps,
    params: &CompletenessParams,
) -> Result<Value, ApiError> {
    let filter = parse_completeness(params)?;
    let series = read(deps.storage.completeness()).await?;
    let rows: Vec<CompletenessRow> = series
        .into_iter()
        .filter(|c| filter.matches(&c.key))
        .map(CompletenessRow::from)
        .collect();
    Ok(to_value(&rows))
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Our report types have string keys only, so this cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `value` as JSON text, as `HttpResponse::json` would write it.
fn to_json_bytes(value: &Value) -> Vec<u8> {
    // A `Value` has string keys only, so this cannot fail.
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

// ---- response encoding --------------------------------------------------

/// Smallest body [`json_answer`] compresses. Below it gzip saves too little
/// to matter: 8 KiB is about 60 `/ohlcv` rows, which gzip level 1 shrinks
/// to 2.1 KiB in 16 µs (measured, release build, 2-core shared machine); a
/// smaller answer already leaves in a round trip or two, and compressing
/// it costs CPU for a few hundred bytes (see `benches/ohlcv_encoding.rs`).
pub const GZIP_MIN_BODY: usize = 8 * 1024;

/// The gzip level of [`json_answer`]: 1, the fastest. On 1000 `/ohlcv`
/// rows (121 KB) it took 0.38 ms for 30.5 KB, against 3.4 ms for 22.7 KB
/// at the default level 6 (same machine): a ninth of the time for a body
/// a third larger, and the gateway's CPU is better spent than on those
/// bytes.
pub const GZIP_LEVEL: u32 = 1;

/// A 200 answer with the JSON `body`: gzip-compressed when the request
/// accepts gzip ([`accepts_gzip`]) and the body is at least
/// [`GZIP_MIN_BODY`], as is otherwise. `Vary: Accept-Encoding` either way,
/// so a cache keeps the two apart.
pub(crate) fn json_answer(req: &HttpRequest, body: Vec<u8>) -> HttpResponse {
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header(ContentType::json())
        .insert_header((header::VARY, "Accept-Encoding"));
    if body.len() >= GZIP_MIN_BODY && accepts_gzip(req.headers()) {
        match gzip(&body) {
            Ok(compressed) => {
                return answer
                    .insert_header((header::CONTENT_ENCODING, "gzip"))
                    .body(compressed)
            }
            // Writing to memory does not fail; if it ever did, the body
            // still goes out, uncompressed.
            Err(error) => tracing::warn!(%error, "gzip failed; answering uncompressed"),
        }
    }
    answer.body(body)
}

/// `body` compressed as a gzip stream at [`GZIP_LEVEL`].
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    // JSON candles shrink about 6-fold at level 1.
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::new(GZIP_LEVEL),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// Whether the request's `Accept-Encoding` headers (RFC 9110 §12.5.3)
/// let the answer be gzip: `gzip` (or `x-gzip`) with a non-zero weight,
/// or, when gzip is not named, `*` with one; and no more weight on an
/// `identity` named beside it. No header, an empty one, `gzip;q=0` or a
/// weight that does not parse all mean identity, which every client
/// reads.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut identity = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        // A header that is not text names no coding we could use.
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let Some((coding, weight)) = coding_weight(item) else {
                continue;
            };
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case("identity") {
                    &mut identity
                } else if coding == "*" {
                    &mut any
                } else {
                    continue;
                };
            // Named twice: the higher weight counts.
            *slot = Some(slot.map_or(weight, |seen: u16| seen.max(weight)));
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    // Only an `identity` named with a higher weight is preferred over an
    // acceptable gzip: unnamed, it is merely acceptable, and a client that
    // lists gzip at all (`deflate, gzip;q=0.5`) reads it.
    let identity = identity.unwrap_or(0);
    gzip > 0 && gzip >= identity
}

/// One element of `Accept-Encoding`: its coding and its weight in
/// thousandths (1000 when it has no `q`). `None` for an empty element, and
/// a weight that is not a qvalue counts as 0: refusing is the safe reading.
fn coding_weight(item: &str) -> Option<(&str, u16)> {
    let mut parts = item.split(';');
    let coding = parts.next()?.trim();
    if coding.is_empty() {
        return None;
    }
    let mut weight = 1000;
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            weight = qvalue(value.trim()).unwrap_or(0);
        }
    }
    Some((coding, weight))
}

/// A qvalue (`0`, `0.5`, `1.000`: at most three decimals, at most 1) in
/// thousandths; `None` if `text` is not one.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    // `.5` is 500 thousandths: the digits, scaled by the ones left out.
    let digits = fraction
        .bytes()
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    let missing = 3 - fraction.len() as u32;
    let weight = whole + digits * 10u16.pow(missing);
    (weight <= 1000).then_some(weight)
}

// ---- validation ---------------------------------------------------------

fn parse_exchange(text: &str, key: &str) -> Result<ExchangeId, ApiError> {
    text.parse()
        .map_err(|error| ApiError::bad_request("unknown_exchange", format!("{key}: {error}")))
}

fn parse_ohlcv(
    exchange: &str,
    symbol: &str,
    interval: &str,
    params: &OhlcvParams,
) -> Result<(SeriesKey, CandleQuery), ApiError> {
    let exchange = parse_exchange(exchange, "exchange")?;
    let symbol = Symbol::new(symbol)
        .map_err(|error| ApiError::bad_request("invalid_symbol", format!("symbol: {error}")))?;
    let interval: Interval = interval
        .parse()
        .map_err(|error| ApiError::bad_request("unknown_interval", format!("interval: {error}")))?;
    let from = time_param("from", params.from.as_deref())?;
    let to = time_param("to", params.to.as_deref())?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::bad_request(
                "bad_range",
                format!("from ({from}) is after to ({to})"),
            ));
        }
    }
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_OHLCV_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_OHLCV_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_limit",
                    format!("limit: {text:?} is not a whole number from 1 to {MAX_OHLCV_LIMIT}"),
                )
            })?,
    };
    Ok((
        SeriesKey::new(exchange, symbol, interval),
        CandleQuery { from, to, limit },
    ))
}

fn parse_completeness(params: &CompletenessParams) -> Result<CompletenessFilter, ApiError> {
    let given = |value: &Option<String>| value.clone().filter(|text| !text.is_empty());
    Ok(CompletenessFilter {
        exchange: given(&params.exchange)
            .map(|text| parse_exchange(&text, "exchange"))
            .transpose()?,
        symbol: given(&params.symbol)
            .map(|text| {
                Symbol::new(&text).map_err(|error| {
                    ApiError::bad_request("invalid_symbol", format!("symbol: {error}"))
                })
            })
            .transpose()?,
        interval: given(&params.interval)
            .map(|text| {
                text.parse::<Interval>().map_err(|error| {
                    ApiError::bad_request("unknown_interval", format!("interval: {error}"))
                })
            })
            .transpose()?,
    })
}

/// A `from`/`to` value: UTC milliseconds, an integer ≥ 0. Empty means
/// absent, as a form or a careless URL template sends it.
fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|t| *t >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_request",
                    format!(
                        "{name}: {text:?} is not a time in UTC milliseconds (a whole number ≥ 0)"
                    ),
                )
            }),
    }
}

/// The body as an object with only the `allowed` keys.
fn body_object<'a>(
    body: &'a Value,
    allowed: &[&str],
    example: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "bad_request",
            format!("request body must be a JSON object like {example}"),
        )
    })?;
    if let Some(key) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("{key}: unknown field; expected {}", allowed.join(", ")),
        ));
    }
    Ok(object)
}

fn exchange_field(object: &Map<String, Value>) -> Result<ExchangeId, ApiError> {
    match object.get("exchange") {
        None => Err(ApiError::bad_request("bad_request", "exchange: missing")),
        Some(Value::String(text)) => parse_exchange(text, "exchange"),
        Some(other) => Err(ApiError::bad_request(
            "bad_request",
            format!("exchange: expected a string like \"binance_futures\", got {other}"),
        )),
    }
}

pub(super) fn parse_set_symbols(body: &Value) -> Result<(ExchangeId, Vec<Symbol>), ApiError> {
    let object = body_object(
        body,
        &["exchange", "symbols"],
        r#"{"exchange":"binance_futures","symbols":["BTCUSDT"]}"#,
    )?;
    let exchange = exchange_field(object)?;
    let items = match object.get("symbols") {
        None => return Err(ApiError::bad_request("bad_request", "symbols: missing")),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("symbols: expected an array of symbols like [\"BTCUSDT\"], got {other}"),
            ))
        }
    };
    let mut symbols: Vec<Symbol> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(text) = item else {
            return Err(ApiError::bad_request(
                "invalid_symbol",
                format!("symbols[{i}]: expected a string like \"BTCUSDT\", got {item}"),
            ));
        };
        let symbol = Symbol::new(text).map_err(|error| {
            ApiError::bad_request("invalid_symbol", format!("symbols[{i}]: {error}"))
        })?;
        symbols.push(symbol);
    }
    // The rules of the config file, with a code of their own here.
    check_symbols(&symbols).map_err(|error| {
        let code = match error {
            SymbolListError::TooMany { .. } => "too_many_symbols",
            SymbolListError::Duplicate { .. } => "duplicate_symbol",
        };
        ApiError::bad_request(code, format!("{}: {error}", error.key("symbols")))
    })?;
    Ok((exchange, symbols))
}

pub(super) fn parse_toggle(body: &Value) -> Result<(ExchangeId, Option<bool>), ApiError> {
    let object = body_object(
        body,
        &["exchange", "enabled"],
        r#"{"exchange":"binance_futures","enabled":true}"#,
    )?;
    let exchange = exchange_field(object)?;
    let enabled = match object.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(enabled)) => Some(*enabled),
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("enabled: expected true or false (or nothing, to toggle), got {other}"),
            ))
        }
    };
    Ok((exchange, enabled))
}

#[cfg(test)]
pub(crate) mod tests;
