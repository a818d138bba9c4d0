//! What keeps a hostile web page (or a flood) from driving the gateway:
//! one middleware in front of every route, `guard`, and the settings it
//! reads, [`GatewaySettings`].
//!
//! A browser lets any page the user visits send requests to
//! `http://localhost:3000`: a plain HTML form can `POST /deleteDatabase`,
//! a script can open `/ws`, and a name the attacker controls can be made
//! to resolve to 127.0.0.1 (DNS rebinding) so that the page even reads the
//! answers. The checks, in the order they run:
//!
//! 1. **rate limit**: each client address gets a token bucket of
//!    `rate_limit` requests per second, bursts of twice that; beyond it,
//!    429 `rate_limited` with `Retry-After`;
//! 2. **Host**: the `Host` header must be `localhost`, an IP literal or a
//!    name in `allowed_hosts`, else 421 `misdirected_request`. A rebound
//!    name still arrives as the attacker's name, so it is refused;
//! 3. **CORS preflight**: `OPTIONS` with `Access-Control-Request-Method`
//!    is answered 204 with the CORS headers for an origin in
//!    `allowed_origins`, 403 `forbidden_origin` for any other;
//! 4. **Origin**: a mutating request (anything but `GET`, `HEAD`,
//!    `OPTIONS`) and the `/ws` upgrade that carry an `Origin` must come
//!    from the gateway's own origin (`http://` + the `Host`) or one in
//!    `allowed_origins`, else 403 `forbidden_origin`. Without `Origin`
//!    (curl, scripts, other non-browser clients) the check does not apply:
//!    browsers always send it on these requests;
//! 5. **form bodies**: a mutating request whose body is
//!    `application/x-www-form-urlencoded`, `multipart/form-data` or
//!    `text/plain` (what HTML forms and "simple" cross-site requests can
//!    send without asking first) gets 415 `unsupported_media_type`.
//!
//! Responses to an origin in `allowed_origins` carry
//! `Access-Control-Allow-Origin` and `Vary: Origin`; no other response
//! carries CORS headers, so browsers keep every other page from reading
//! the answers. The remaining defence, mutations from remote peers when no
//! `api_token` is set, is `http::authorize`'s.
//!
//! Settings are read from the config when the gateway starts; a changed
//! config applies at the next start of the gateway.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use ohlcv_domain::config::{
    split_host_port, Config, Origin, DEFAULT_MAX_CLIENTS, DEFAULT_RATE_LIMIT,
};

use super::errors::ApiError;

/// Client addresses the rate limiter remembers at once. Each entry is a few
/// dozen bytes, so the table stays under a megabyte however many addresses
/// a flood comes from; beyond it, idle entries (and then the longest
/// unseen) are dropped.
pub const MAX_TRACKED_CLIENTS: usize = 4096;

/// How long browsers may cache a preflight answer, in seconds: ten
/// minutes saves a round trip per request without keeping a changed
/// `allowed_origins` from taking effect for long.
pub const PREFLIGHT_MAX_AGE_S: u32 = 600;

/// The gateway's slice of the config: who may call it and how often. Read
/// from the running config each time the gateway starts, so a change
/// applies at the next start of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Origins whose pages may call the API from a browser (see
    /// `Config::allowed_origins`).
    pub allowed_origins: Vec<String>,
    /// Host names the `Host` header may name besides `localhost` and IP
    /// literals (see `Config::allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Requests per second per client address; 0 disables the limit.
    pub rate_limit: u32,
    /// Most WebSocket clients at once.
    pub max_clients: u32,
}

impl GatewaySettings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> Self {
        GatewaySettings {
            allowed_origins: config.allowed_origins.clone(),
            allowed_hosts: config.allowed_hosts.clone(),
            rate_limit: config.rate_limit,
            max_clients: config.max_clients,
        }
    }
}

impl GatewaySettings {
    /// The config keys whose values differ between `self` (what a gateway
    /// runs with) and `other`: what a config change leaves pending until
    /// the gateway's next start, for `applied.pending_restart`.
    pub fn changed_keys(&self, other: &GatewaySettings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.allowed_origins != other.allowed_origins {
            keys.push("allowed_origins");
        }
        if self.allowed_hosts != other.allowed_hosts {
            keys.push("allowed_hosts");
        }
        if self.rate_limit != other.rate_limit {
            keys.push("rate_limit");
        }
        if self.max_clients != other.max_clients {
            keys.push("max_clients");
        }
        keys
    }
}

impl Default for GatewaySettings {
    /// The settings of a config that names none of the keys: no other
    /// origin, no other host name, the default limits.
    fn default() -> Self {
        GatewaySettings {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            rate_limit: DEFAULT_RATE_LIMIT,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// The state of [`guard`] for one server: its settings, parsed, and the
/// rate limiter its workers share.
pub(crate) struct Security {
    origins: Vec<Origin>,
    hosts: Vec<String>,
    limiter: Option<RateLimiter>,
}

impl Security {
    /// The checks `settings` ask for. An origin that does not parse (the
    /// config validation refuses those) matches nothing.
    pub(crate) fn new(settings: &GatewaySettings) -> Self {
        Security {
            origins: settings
                .allowed_origins
                .iter()
                .filter_map(|text| Origin::parse(text).ok())
                .collect(),
            hosts: settings
                .allowed_hosts
                .iter()
                .map(|host| {
                    let lower = host.to_ascii_lowercase();
                    lower.strip_suffix('.').unwrap_or(&lower).to_owned()
                })
                .collect(),
            limiter: RateLimiter::new(settings.rate_limit),
        }
    }

    /// Takes one request of `peer` from its rate limit: the WebSocket's
    /// requests and commands count against the same per-address budget as
    /// HTTP requests, so a page cannot get around the limit by asking over
    /// an open socket.
    ///
    /// # Errors
    /// 429 `rate_limited` with the seconds to wait, when the budget is
    /// spent.
    pub(crate) fn admit(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.limiter, peer) {
            (Some(limiter), Some(ip)) => limiter
                .take(ip, Instant::now())
                .map_err(ApiError::rate_limited),
            _ => Ok(()),
        }
    }

    /// What to do with `req`.
    fn judge(&self, req: &ServiceRequest, now: Instant) -> Verdict {
        if let (Some(limiter), Some(peer)) = (&self.limiter, req.peer_addr()) {
            if let Err(retry_after_s) = limiter.take(peer.ip(), now) {
                return Verdict::Refuse(ApiError::rate_limited(retry_after_s));
            }
        }
        let host = match self.host(req) {
            Ok(host) => host,
            Err(refused) => return Verdict::Refuse(refused),
        };
        let origin = req.headers().get(header::ORIGIN);
        let method = req.method();
        if method == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return match origin {
                Some(origin) if self.listed_origin(origin).is_some() => Verdict::Preflight,
                _ => Verdict::Refuse(ApiError::forbidden_origin(format!(
                    "{}: no CORS for this origin; list it in allowed_origins in the config file",
                    describe_origin(origin)
                ))),
            };
        }
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if mutating || req.path() == "/ws" {
            if let Some(origin) = origin {
                if !self.origin_allowed(origin, host.as_ref()) {
                    return Verdict::Refuse(ApiError::forbidden_origin(format!(
                        "{} {} from a page of {} refused: only the collector's own pages and \
                         the allowed_origins of the config file may do this",
                        req.method(),
                        req.path(),
                        describe_origin(Some(origin)),
                    )));
                }
            }
        }
        if mutating {
            if let Some(form) = form_content_type(req.headers()) {
                return Verdict::Refuse(ApiError::unsupported_media_type(format!(
                    "request bodies must be JSON (Content-Type: application/json); {form} is \
                     what HTML forms send, and is refused so that no web page can post to the \
                     collector"
                )));
            }
        }
        Verdict::Pass
    }

    /// The request's host and port, from `Host` (or the authority of an
    /// absolute URI); `None` if it names none, which only pre-HTTP/1.1
    /// tools do (browsers always send `Host`).
    ///
    /// # Errors
    /// 421 `misdirected_request` for a host that is not `localhost`, an
    /// IP literal or a name in `allowed_hosts`, or that does not parse.
    fn host(&self, req: &ServiceRequest) -> Result<Option<(String, Option<u16>)>, ApiError> {
        let text = match req.headers().get(header::HOST) {
            Some(value) => value.to_str().map_err(|_| {
                ApiError::misdirected("the Host header is not text; expected host[:port]")
            })?,
            None => match req.uri().authority() {
                Some(authority) => authority.as_str(),
                None => return Ok(None),
            },
        };
        let (host, port) = split_host_port(text)
            .ok_or_else(|| ApiError::misdirected(format!("Host {text:?} is not host[:port]")))?;
        // An IP literal cannot be rebound: only a name can be made to
        // resolve to this machine behind the user's back.
        let allowed =
            host.parse::<IpAddr>().is_ok() || host == "localhost" || self.hosts.contains(&host);
        if allowed {
            Ok(Some((host, port)))
        } else {
            Err(ApiError::misdirected(format!(
                "Host {host:?} is not this collector's name: use localhost or an IP address, \
                 or add the name to allowed_hosts in the config file"
            )))
        }
    }

    /// The origin of `value`, if it is in `allowed_origins`.
    fn listed_origin(&self, value: &HeaderValue) -> Option<Origin> {
        let origin = Origin::parse(value.to_str().ok()?).ok()?;
        self.origins.contains(&origin).then_some(origin)
    }

    /// Whether a request with `Origin: value` to `host` may proceed: the
    /// gateway's own origin, or one in `allowed_origins`.
    fn origin_allowed(&self, value: &HeaderValue, host: Option<&(String, Option<u16>)>) -> bool {
        let Some(origin) = value.to_str().ok().and_then(|t| Origin::parse(t).ok()) else {
            return false; // `null` (a sandboxed or file page) or garbage
        };
        if self.origins.contains(&origin) {
            return true;
        }
        // The gateway speaks plain HTTP: its own pages are http://<Host>.
        host.is_some_and(|(host, port)| {
            origin.scheme == "http" && origin.host == *host && origin.port == port.unwrap_or(80)
        })
    }
}

/// [`Security::judge`]'s decision.
enum Verdict {
    Pass,
    Preflight,
    Refuse(ApiError),
}

/// The middleware: [`Security::judge`]s each request, answers refusals
/// and preflights itself, and adds the CORS headers to every answer for
/// an allowed origin.
///
/// # Errors
/// Only the inner service's own errors.
pub(crate) async fn guard<B: MessageBody + 'static>(
    security: Arc<Security>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let cors = req
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| security.listed_origin(origin).is_some())
        .cloned();
    let mut response = match security.judge(&req, Instant::now()) {
        Verdict::Pass => next.call(req).await?.map_into_left_body(),
        Verdict::Preflight => {
            let answer = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_S))
                .finish();
            req.into_response(answer).map_into_right_body()
        }
        Verdict::Refuse(refused) => req.error_response(refused).map_into_right_body(),
    };
    if let Some(origin) = cors {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response)
}

fn describe_origin(origin: Option<&HeaderValue>) -> String {
    match origin.map(HeaderValue::to_str) {
        Some(Ok(text)) => format!("origin {text:?}"),
        Some(Err(_)) => "an origin that is not text".into(),
        None => "no origin".into(),
    }
}

/// The media type of a form body, if the request's `Content-Type` is one.
fn form_content_type(headers: &HeaderMap) -> Option<String> {
    const FORMS: [&str; 3] = [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ];
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    FORMS.contains(&essence.as_str()).then_some(essence)
}

/// Token buckets per client address: `rate` tokens a second, at most
/// `burst` (twice the rate) saved up, one per request.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

impl RateLimiter {
    /// A limiter of `rate` requests a second; `None` for 0 (no limit).
    pub(crate) fn new(rate: u32) -> Option<Self> {
        (rate > 0).then(|| RateLimiter {
            rate: f64::from(rate),
            burst: 2.0 * f64::from(rate),
            buckets: Mutex::default(),
        })
    }

    /// Takes a token for `ip` at `now`.
    ///
    /// # Errors
    /// The whole seconds until a token is there again, at least 1, when the
    /// bucket is empty.
    pub(crate) fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let key = client_key(ip);
        // The table is only ever left consistent; a panic elsewhere while
        // it was held does not make it unusable.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED_CLIENTS {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = bucket.refilled(now, self.rate, self.burst);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(((1.0 - tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Makes room for one entry: drops every idle one (its bucket full
    /// again, so forgetting it changes nothing), or else the longest
    /// unseen.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| bucket.refilled(now, self.rate, self.burst) < self.burst);
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                buckets.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The key of `ip` in the limiter: IPv4 as is (an IPv4-mapped IPv6
/// address too), IPv6 by its /64 network, since one host is usually given
/// a whole /64 and could otherwise take a fresh bucket per request.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Whether a peer may change things without an `api_token`: only the
/// machine itself, so that a collector bound to a public address without a
/// token cannot be driven by whoever reaches the port.
pub(crate) fn is_local(peer: Option<IpAddr>) -> bool {
    peer.is_some_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests;
