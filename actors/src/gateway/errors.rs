//! Errors as UI clients see them: `{"error":{"code":"…","message":"…"}}`
//! with a 4xx or 5xx status.
//!
//! [`ApiError`] is the one error type of the HTTP routes. The errors of the
//! layers below ([`ControlError`], [`StorageRequestError`]) convert into it
//! with a fixed status and code, and the extractor configurations here
//! ([`json_config`], [`path_config`], [`query_config`]) turn actix-web's own
//! extractor failures (bad JSON, oversized body, bad query string) into the
//! same shape, so a client never has to parse two error formats. A route
//! that needs the `api_token` answers [`ApiError::unauthorized`] (401) or
//! [`ApiError::forbidden`] (403).

use std::borrow::Cow;
use std::fmt;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use ohlcv_domain::ErrorChain;
use serde::Serialize;

use super::protocol::ErrorBody;
use crate::control::ControlError;
use crate::storage::StorageRequestError;

/// Largest JSON request body accepted. The largest legitimate body is a
/// whole config with a few hundred symbols per exchange (~25 KiB); anything
/// much larger is a mistake or an attack, refused before it is buffered.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// An HTTP error answer: status, stable code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// A header the answer must carry (`Allow` on a 405,
    /// `WWW-Authenticate` on a 401).
    header: Option<(header::HeaderName, String)>,
}

impl ApiError {
    /// An error with any status; prefer the named constructors.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            header: None,
        }
    }

    /// 400: the request is invalid; `code` says how (`unknown_exchange`, …).
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`: no route has this path.
    pub fn not_found(method: &str, path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )
    }

    /// 405 `method_not_allowed`, with the `Allow` header listing `allowed`.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("{method} is not allowed on {path}; allowed: {allow}").into(),
            header: Some((header::ALLOW, allow)),
        }
    }

    /// 401 `unauthorized`: the request needs the `api_token` and presented
    /// none. Carries `WWW-Authenticate: Bearer` (RFC 6750), which tells a
    /// client what kind of credentials to send.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            header: Some((
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="ohlcv-collector""#.to_owned(),
            )),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 403 `forbidden`: the request presented a token, and it is not the
    /// `api_token`; or no `api_token` is set and the request does not come
    /// from the machine itself.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 `forbidden_origin`: a browser page of another origin tried to
    /// change something or open the WebSocket (see
    /// [`security`](super::security)).
    pub fn forbidden_origin(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message)
    }

    /// 415 `unsupported_media_type`: the body is not JSON.
    pub fn unsupported_media_type(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 421 `misdirected_request`: the `Host` header names another server,
    /// as a DNS-rebinding page's requests do.
    pub fn misdirected(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            message,
        )
    }

    /// 429 `rate_limited`, with `Retry-After` (whole seconds, at least 1),
    /// which tells a well-behaved client when to try again.
    pub fn rate_limited(retry_after_s: u64) -> Self {
        let retry_after_s = retry_after_s.max(1);
        ApiError {
            header: Some((header::RETRY_AFTER, retry_after_s.to_string())),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests from this address (rate_limit in the config file); \
                     retry in {retry_after_s} s"
                ),
            )
        }
    }

    /// 503 `unavailable`: the collector cannot answer right now.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message for humans.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error as the body's `error` object (and a WebSocket
    /// `command_result`'s failed `result`).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_owned(),
            message: self.message.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `{"error": {...}}`, the envelope of every error response (its name in
/// the OpenAPI document: `Error`).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct Envelope {
    /// The code and the message.
    pub(crate) error: ErrorBody,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            // Worth a line in the process log (and the UI's log panel): the
            // collector itself failed. A 502 or 503 is the exchange or a
            // restart in progress, which the client already hears about.
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let mut response = HttpResponse::build(self.status);
        if let Some((name, value)) = &self.header {
            response.insert_header((name.clone(), value.as_str()));
        }
        response.json(Envelope { error: self.body() })
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::Invalid { code, message } => ApiError::bad_request(code, message),
            ControlError::Exchange(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "exchange_error", error.to_string())
            }
            ControlError::Unavailable(message) => ApiError::unavailable(message),
            ControlError::Internal(message) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<StorageRequestError> for ApiError {
    fn from(error: StorageRequestError) -> Self {
        match error {
            StorageRequestError::Busy | StorageRequestError::Gone => {
                ApiError::unavailable(error.to_string())
            }
            StorageRequestError::Failed(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                // The SQLite or OS reason is a source, not in the message.
                ErrorChain(&error).to_string(),
            ),
        }
    }
}

/// JSON body extraction: at most [`JSON_BODY_LIMIT`] bytes, and every
/// failure as an [`ApiError`]. The routes extract
/// `web::Json<`[`UniqueKeys`](ohlcv_domain::json::UniqueKeys)`>`, so a key
/// listed twice is one of those failures (`400 bad_request`, the message
/// naming the key's path).
///
/// `Content-Type: application/json` stays required (actix-web's default;
/// anything else is `415 unsupported_media_type`): a browser can send a
/// cross-site `text/plain` or form POST without asking first, but not a
/// JSON one. This only covers routes that read a body; the
/// [`security`](super::security) middleware refuses form content types on
/// every mutating route, body or not.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(JSON_BODY_LIMIT)
        .error_handler(|error, _req| json_error(&error).into())
}

/// Path extraction failures as `400 bad_request`.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, _req: &HttpRequest| {
        let detail = match &error {
            PathError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        ApiError::bad_request("bad_request", format!("path: {detail}")).into()
    })
}

/// Query-string extraction failures as `400 bad_request`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _req: &HttpRequest| {
        let detail = match &error {
            QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        ApiError::bad_request("bad_request", format!("query string: {detail}")).into()
    })
}

fn json_error(error: &JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body is larger than {JSON_BODY_LIMIT} bytes"),
            )
        }
        JsonPayloadError::ContentType => ApiError::unsupported_media_type(
            "request body must be sent with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(inner) => ApiError::bad_request(
            "bad_request",
            format!("request body is not valid JSON: {inner}"),
        ),
        other => ApiError::bad_request(
            "bad_request",
            format!("request body could not be read: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_layer_errors_map_to_fixed_statuses_and_codes() {
        let cases = [
            (
                ApiError::from(ControlError::invalid("invalid_config", "port: bad")),
                400,
                "invalid_config",
            ),
            (
                ControlError::Exchange("timeout".into()).into(),
                502,
                "exchange_error",
            ),
            (
                ControlError::Unavailable("restarting".into()).into(),
                503,
                "unavailable",
            ),
            (
                ControlError::Internal("disk full".into()).into(),
                500,
                "internal",
            ),
            (StorageRequestError::Busy.into(), 503, "unavailable"),
            (StorageRequestError::Gone.into(), 503, "unavailable"),
            (
                StorageRequestError::Failed(ohlcv_storage::StorageError::Foreign {
                    reason: "x".into(),
                })
                .into(),
                500,
                "storage_error",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status_code().as_u16(), status, "{error}");
            assert_eq!(error.code(), code);
        }
        let exchange: ApiError = ControlError::Exchange("timeout".into()).into();
        assert_eq!(exchange.message(), "exchange error: timeout");
        // A storage error's reason is its source; the client still gets it.
        let storage: ApiError = StorageRequestError::Failed(ohlcv_storage::StorageError::Io {
            op: "inspect the database file",
            path: "data/ohlcv.db".into(),
            source: std::io::Error::other("permission denied"),
        })
        .into();
        assert_eq!(
            storage.message(),
            "inspect the database file data/ohlcv.db: permission denied"
        );
    }

    #[test]
    fn auth_errors_have_their_statuses_and_a_bearer_challenge() {
        let unauthorized = ApiError::unauthorized("no token").error_response();
        assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            unauthorized
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .unwrap(),
            r#"Bearer realm="ohlcv-collector""#
        );
        let forbidden = ApiError::forbidden("wrong token");
        assert_eq!(forbidden.code(), "forbidden");
        let forbidden = forbidden.error_response();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
