//! The dashboard and the browser client, served from files embedded in the
//! binary: nothing to install beside it, no build step, no CDN.
//!
//! | route | file |
//! |---|---|
//! | `GET /` | `assets/index.html`, the dashboard |
//! | `GET /client.js` | `assets/client.js`, the WebSocket client as an ES module |
//! | `GET /assets/{name}` | the dashboard's script and stylesheet, and the vendored libraries with their licences (`assets/vendor/`, see its README) |
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles,
//! images and connections from this origin only, which includes its
//! WebSocket), `X-Content-Type-Options: nosniff` so that a browser never
//! runs a file as anything but its declared type, and an `ETag` with
//! `Cache-Control: no-cache`: a browser keeps the files but asks each time
//! whether they changed (a `304` without a body), so a new binary's
//! dashboard is seen at the next reload, never a stale mix.

use std::sync::{Arc, OnceLock};

use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{ApiError, Envelope};
use super::security::{guard, Security};

/// The policy of every asset. `default-src 'self'` keeps every kind of
/// resource to this origin; `connect-src 'self'` allows the page's fetches
/// and its same-origin WebSocket (CSP level 3 lets `'self'` match `ws:`
/// and `wss:` of the same host). The chart draws on canvases and sets
/// styles through the DOM, which the policy does not restrict, so no
/// `'unsafe-inline'` is needed. The one inline style allowed, by its hash,
/// is the `<style>` Lightweight Charts adds for its attribution logo
/// (`a#tv-attr-logo{…}` in the vendored file): the logo is the link to
/// TradingView its licence asks for. A new version of the library may
/// change that text; `tests/dashboard.rs` fails on any violation.
/// Framing is refused (`frame-ancestors`): the dashboard has controls
/// that stop exchanges.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; \
     script-src 'self'; \
     style-src 'self' 'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='; \
     img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// How browsers may keep the files: store them, but revalidate with the
/// `ETag` before each use, so an upgraded collector is picked up at once.
const CACHE_CONTROL: &str = "no-cache";

/// One embedded file.
struct Asset {
    /// The name under `/assets/` (`index.html` and `client.js` have routes
    /// of their own).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file served; `INDEX` and `CLIENT` are the first two.
static ASSETS: [Asset; 9] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "client.js",
        content_type: JS,
        body: include_bytes!("assets/client.js"),
    },
    Asset {
        name: "dashboard.js",
        content_type: JS,
        body: include_bytes!("assets/dashboard.js"),
    },
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/dashboard.css"),
    },
    Asset {
        name: "lightweight-charts.standalone.production.js",
        content_type: JS,
        body: include_bytes!("assets/vendor/lightweight-charts.standalone.production.js"),
    },
    Asset {
        name: "lightweight-charts.LICENSE",
        content_type: TEXT,
        body: include_bytes!("assets/vendor/lightweight-charts.LICENSE"),
    },
    Asset {
        name: "lightweight-charts.NOTICE",
        content_type: TEXT,
        body: include_bytes!("assets/vendor/lightweight-charts.NOTICE"),
    },
    Asset {
        name: "msgpack.min.js",
        content_type: JS,
        body: include_bytes!("assets/vendor/msgpack.min.js"),
    },
    Asset {
        name: "msgpack.LICENSE",
        content_type: TEXT,
        body: include_bytes!("assets/vendor/msgpack.LICENSE"),
    },
];

const INDEX: usize = 0;
const CLIENT: usize = 1;

/// The `ETag` of each file of [`ASSETS`], in the same order: a hash of its
/// bytes, computed once. FNV-1a is enough: it only has to change when a
/// file does, nobody gains by forging one.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let hash = asset.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{hash:016x}\"")
            })
            .collect()
    })
}

/// Registers `/`, `/client.js` and `/assets/{name}` (GET and HEAD; other
/// methods get the API's JSON 405), each behind the API's own
/// [`guard`] (rate limit, `Host` check), so that a flood or a rebound
/// host name meets the same refusals here as on the API routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, security: &Arc<Security>) {
    cfg.service(get_or_head(ROUTES[0].0, security, index))
        .service(get_or_head(ROUTES[1].0, security, client))
        .service(get_or_head(ROUTES[2].0, security, named));
}

/// The dashboard's routes and the methods documented for them (each also
/// answers `HEAD`), as [`configure`] registers them and the OpenAPI
/// document lists them.
pub(crate) const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/client.js", &["GET"]),
    ("/assets/{name}", &["GET"]),
];

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard, an HTML page", content_type = "text/html"),
        (status = 304, description = "Unchanged since the `ETag` given in `If-None-Match`")))]
pub(super) async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, INDEX)
}

/// The JavaScript client module the dashboard uses (see the README's
/// "Dashboard" section).
#[utoipa::path(get, path = "/client.js", tag = "dashboard",
    responses((status = 200, description = "An ES module", content_type = "text/javascript"),
        (status = 304, description = "Unchanged since the `ETag` given in `If-None-Match`")))]
pub(super) async fn client(req: HttpRequest) -> HttpResponse {
    serve(&req, CLIENT)
}

/// A resource answering GET and HEAD (a HEAD answer has the headers of the
/// GET one, actix-web leaves the body out) with `handler`, and any other
/// method with a JSON 405 as the API's routes do.
fn get_or_head<F, Args>(
    path: &'static str,
    security: &Arc<Security>,
    handler: F,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let security = security.clone();
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::method_not_allowed(
                req.method().as_str(),
                req.path(),
                &["GET", "HEAD"],
            ))
        }))
        .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
            guard(security.clone(), req, next)
        }))
}

/// A file the dashboard loads (its script, styles and vendored libraries).
#[utoipa::path(get, path = "/assets/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "The file's name, e.g. `dashboard.js`")),
    responses((status = 200, description = "The file, with its content type"),
        (status = 304, description = "Unchanged since the `ETag` given in `If-None-Match`"),
        (status = 404, description = "No such file", body = Envelope)))]
pub(super) async fn named(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // `index.html` and `client.js` live at their own routes only, so that
    // each file has one address (and one cache entry).
    match ASSETS
        .iter()
        .enumerate()
        .skip(CLIENT + 1)
        .find(|(_, asset)| asset.name == name.as_str())
    {
        Some((index, _)) => Ok(serve(&req, index)),
        None => Err(ApiError::not_found(req.method().as_str(), req.path())),
    }
}

/// The file `index` of [`ASSETS`], or `304 Not Modified` when the request's
/// `If-None-Match` names its current `ETag`.
fn serve(req: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        response.finish()
    } else {
        response
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::{Method, StatusCode};
    use actix_web::{test as web_test, App};

    use super::*;

    async fn get(
        path: &str,
        method: Method,
        etag: Option<&str>,
    ) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
        let security = Arc::new(Security::new(&Default::default()));
        let app =
            web_test::init_service(App::new().configure(|cfg| configure(cfg, &security))).await;
        let mut req = web_test::TestRequest::default().method(method).uri(path);
        if let Some(etag) = etag {
            req = req.insert_header((header::IF_NONE_MATCH, etag));
        }
        let response = web_test::call_service(&app, req.to_request()).await;
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        (
            status,
            headers,
            web_test::read_body(response).await.to_vec(),
        )
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[actix_web::test]
    async fn every_file_has_its_type_the_policy_and_an_etag() {
        let cases = [
            ("/", "text/html; charset=utf-8", "index.html"),
            ("/client.js", JS, "client.js"),
            ("/assets/dashboard.js", JS, "dashboard.js"),
            (
                "/assets/dashboard.css",
                "text/css; charset=utf-8",
                "dashboard.css",
            ),
            (
                "/assets/lightweight-charts.standalone.production.js",
                JS,
                "lightweight-charts.standalone.production.js",
            ),
            ("/assets/msgpack.min.js", JS, "msgpack.min.js"),
            ("/assets/msgpack.LICENSE", TEXT, "msgpack.LICENSE"),
            (
                "/assets/lightweight-charts.LICENSE",
                TEXT,
                "lightweight-charts.LICENSE",
            ),
            (
                "/assets/lightweight-charts.NOTICE",
                TEXT,
                "lightweight-charts.NOTICE",
            ),
        ];
        for (path, content_type, name) in cases {
            let (status, headers, body) = get(path, Method::GET, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(
                header(&headers, "content-type"),
                Some(content_type),
                "{path}"
            );
            assert_eq!(
                header(&headers, "content-security-policy"),
                Some(CONTENT_SECURITY_POLICY),
                "{path}"
            );
            assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
            assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
            let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
            assert_eq!(body, asset.body, "{path}");
            let etag = header(&headers, "etag").unwrap();
            assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");

            // The browser's revalidation: the same ETag, no body.
            let (status, headers, body) = get(path, Method::GET, Some(etag)).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(header(&headers, "etag"), Some(etag));
            assert!(body.is_empty());
            let (status, _, _) = get(path, Method::GET, Some("\"0000000000000000\"")).await;
            assert_eq!(status, StatusCode::OK, "a stale ETag gets the file: {path}");
        }
        let etags = etags();
        let unique: std::collections::HashSet<_> = etags.iter().collect();
        assert_eq!(unique.len(), etags.len(), "files differ, so do their ETags");
    }

    #[actix_web::test]
    async fn unknown_files_and_other_methods_get_the_api_errors() {
        for path in [
            "/assets/nope.js",
            "/assets/index.html",
            "/assets/client.js",
            "/assets/",
        ] {
            let (status, _, body) = get(path, Method::GET, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            // `/assets/` falls outside every route here, so only the
            // named misses carry the API's body in this app.
            if path != "/assets/" {
                assert_eq!(body["error"]["code"], "not_found", "{path}");
            }
        }
        let (status, headers, body) = get("/", Method::POST, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
        let (status, headers, _) = get("/client.js", Method::HEAD, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), Some(JS));
    }

    /// Every `/assets/…` address the page and the client name is served:
    /// a renamed file breaks this test, not the dashboard.
    #[test]
    fn the_files_link_only_to_files_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for asset in &ASSETS[..4] {
            let text = std::str::from_utf8(asset.body).unwrap();
            for (at, _) in text.match_indices("/assets/") {
                let rest = &text[at + "/assets/".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                    .collect();
                if name.is_empty() {
                    continue; // prose about the folder
                }
                assert!(
                    served.contains(&name.as_str()),
                    "{} links to /assets/{name}, which is not served",
                    asset.name
                );
            }
        }
    }
}
