//! The document against the routes the server registers and answers.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use super::*;
use crate::gateway::http::tests::{app, call};
use crate::gateway::http::ROUTES;
use crate::gateway::test_support::harness;

/// Methods the tests try on every route: each one the document lists must
/// be answered, every other refused with 405.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn document_value() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// Path → upper-case methods, as the document lists them.
fn documented(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|key| METHODS.iter().any(|m| m.eq_ignore_ascii_case(key)))
                .map(|key| key.to_ascii_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// `path` with each `{param}` replaced by a value the route accepts.
fn concrete(path: &str) -> String {
    path.replace("{exchange}", "simulated")
        .replace("{symbol}", "BTCUSDT")
        .replace("{interval}", "1m")
        .replace("{name}", "dashboard.js")
}

#[test]
fn document_lists_exactly_the_routes_the_server_registers() {
    let registered = || ROUTES.iter().chain(crate::gateway::assets::ROUTES);
    let routes: BTreeMap<String, BTreeSet<String>> = registered()
        .map(|(path, methods)| {
            let methods = methods.iter().map(|m| (*m).to_owned()).collect();
            ((*path).to_owned(), methods)
        })
        .collect();
    assert_eq!(routes.len(), registered().count(), "a path listed twice");
    assert_eq!(documented(&document_value()), routes);
}

#[actix_web::test]
async fn every_route_answers_its_documented_methods_and_refuses_the_others() {
    let harness = harness();
    let app = app(harness.deps).await;
    let document = documented(&document_value());
    assert!(!document.is_empty());
    for (path, methods) in &document {
        let uri = concrete(path);
        for method in METHODS {
            let req = TestRequest::default()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri)
                .set_json(json!({}));
            let response = actix_web::test::call_service(&app, req.to_request()).await;
            let status = response.status().as_u16();
            // The dashboard's files are not JSON: shown as text.
            let body = actix_web::test::read_body(response).await;
            let body = String::from_utf8_lossy(&body[..body.len().min(300)]);
            if methods.contains(method) {
                assert!(
                    status != 404 && status != 405,
                    "{method} {uri} is documented but answered {status}: {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {uri} is not documented: {body}");
            }
        }
    }
}

#[actix_web::test]
async fn the_server_serves_this_document() {
    let harness = harness();
    let app = app(harness.deps).await;
    let (status, body) = call(&app, TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(body, document_value());
    assert_eq!(body["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["openapi"].as_str().unwrap().starts_with("3."));
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_names_a_schema_of_the_document() {
    let document = document_value();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target}: not a schema reference"));
        assert!(schemas.contains_key(name), "{target} is not in components");
    }
    // The error envelope and the types the routes answer with.
    for name in [
        "Error",
        "OhlcvRow",
        "SeriesRow",
        "CompletenessRow",
        "StatusReport",
        "Config",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    assert_eq!(
        schemas["Error"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

#[test]
fn every_post_documents_the_token_and_the_middlewares_refusals() {
    let document = document_value();
    let mut posts = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["421", "429"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            if method != "post" {
                assert!(!responses.contains_key("401"), "{method} {path} is open");
                continue;
            }
            posts += 1;
            for status in ["401", "403", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            let forbidden = responses["403"]["description"].as_str().unwrap();
            assert!(
                forbidden.contains("`forbidden`") && forbidden.contains("`forbidden_origin`"),
                "{path}: {forbidden}"
            );
            assert_eq!(
                operation["security"],
                json!([{}, {"api_token": []}]),
                "{path}"
            );
        }
    }
    assert_eq!(
        posts,
        ROUTES
            .iter()
            .filter(|(_, methods)| methods.contains(&"POST"))
            .count()
    );
    assert_eq!(
        document["components"]["securitySchemes"]["api_token"],
        json!({"type": "http", "scheme": "bearer"})
    );
}

#[test]
fn request_body_schemas_are_what_the_parsers_accept() {
    let document = document_value();
    let schemas = &document["components"]["schemas"];
    for (name, parse) in [
        (
            "SetSymbolsRequest",
            (|body: &Value| http::parse_set_symbols(body).map(drop)) as fn(&Value) -> _,
        ),
        ("ToggleRequest", |body: &Value| {
            http::parse_toggle(body).map(drop)
        }),
    ] {
        let schema = &schemas[name];
        let example = &schema["example"];
        let keys: BTreeSet<&String> = example.as_object().unwrap().keys().collect();
        let properties: BTreeSet<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, properties, "{name}: the example shows every field");
        parse(example).unwrap_or_else(|e| panic!("{name}: {example} refused: {e}"));
        let mut extra = example.clone();
        extra["other"] = json!(1);
        assert!(parse(&extra).is_err(), "{name}: the parser takes any key");
    }
}
