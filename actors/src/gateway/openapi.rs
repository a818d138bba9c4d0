//! The OpenAPI 3.1 description of the HTTP API, served at
//! `GET /openapi.json`.
//!
//! Generated, not written: each handler of [`http`](super::http) (and
//! [`ws::upgrade`](super::ws::upgrade)) carries its `#[utoipa::path]`, and
//! the schemas derive from the types the routes answer with (the rows,
//! [`answers`](super::answers), the reports of [`control`](crate::control),
//! the domain's config and ids), so a changed type changes the document.
//! What every route shares is added once here, by [`SharedResponses`]:
//! the refusals of the [`security`](super::security) middleware, which
//! runs in front of every route, and of the token check in front of every
//! `POST`. A test holds the document's paths and
//! methods to [`http::ROUTES`](super::http::ROUTES), the list the server
//! registers its routes from.

use std::sync::LazyLock;

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::assets;
use super::errors::Envelope;
use super::http;
use super::ws;
use crate::metrics::WorkerMetrics;

/// The document: every route of [`http::ROUTES`] and
/// [`assets::ROUTES`], with its schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ohlcv-collector",
        description = "Collects OHLCV candles from crypto exchanges into SQLite and serves them \
            live over HTTP and WebSocket. Every error is `{\"error\":{\"code\",\"message\"}}`; \
            the README's \"HTTP API\" section lists the codes.",
    ),
    paths(
        http::health,
        http::status,
        http::get_config,
        http::post_config,
        http::exchanges,
        http::exchange_symbols,
        http::set_symbols,
        http::toggle_exchange,
        http::ohlcv,
        http::restart,
        http::delete_database,
        http::database_symbols,
        http::completeness,
        document,
        ws::upgrade,
        assets::index,
        assets::client,
        assets::named,
    ),
    // Referenced by `ChildStatus::metrics`' hand-written schema, which the
    // derive cannot follow.
    components(schemas(WorkerMetrics)),
    modifiers(&SharedResponses),
)]
pub struct ApiDoc;

/// The document as served, built once: it never changes while the
/// process runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        // Our schemas are plain maps with string keys, so this cannot
        // fail; if it did, the answer would still be JSON, and say why.
        .unwrap_or_else(|error| {
            serde_json::json!({"error": {"code": "internal", "message": error.to_string()}})
                .to_string()
        })
});

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "This document, OpenAPI 3.1",
        content_type = "application/json")))]
pub(super) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(DOCUMENT.as_str())
}

/// Adds what the middleware in front of every route may answer, and the
/// `api_token` scheme the `POST`s name in their `security`.
struct SharedResponses;

/// An error response with the [`Envelope`] body.
fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Envelope::name())))
                .build(),
        )
        .build()
}

/// Adds `status` to `operation`, or extends the description of the one it
/// has (one response per status: a 403 may be the token's or the origin's).
fn add(operation: &mut Operation, status: &str, description: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(status) {
        Some(utoipa::openapi::RefOr::T(existing)) => {
            existing.description = format!("{}; or {description}", existing.description);
        }
        _ => {
            responses.insert(status.to_owned(), error(description).into());
        }
    }
}

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                add(
                    operation,
                    "421",
                    "`misdirected_request`: the `Host` header names neither localhost, an IP \
                     address nor one of `allowed_hosts`",
                );
                add(
                    operation,
                    "429",
                    "`rate_limited`: over `rate_limit` requests per second from this address; \
                     `Retry-After` says when to try again",
                );
                let mutating = method == HttpMethod::Post;
                if mutating {
                    // Every POST is behind the token (see `http::protected`).
                    add(
                        operation,
                        "401",
                        "`unauthorized`: an `api_token` is set and the request presents none \
                         (`Authorization: Bearer <api_token>`)",
                    );
                    add(
                        operation,
                        "403",
                        "`forbidden`: the token presented is not the `api_token`, or no \
                         `api_token` is set and the peer is not loopback",
                    );
                }
                if mutating || path == "/ws" {
                    add(
                        operation,
                        "403",
                        "`forbidden_origin`: the `Origin` is neither the collector's own nor \
                         one of `allowed_origins`",
                    );
                }
                if mutating {
                    add(
                        operation,
                        "415",
                        "`unsupported_media_type`: the body is not `application/json` (form \
                         and `text/plain` bodies are refused on every `POST`)",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
