//! End-to-end test of `GET /openapi.json`: the real binary describes its
//! own HTTP API, and answers every route the description lists.

mod common;

use common::{simulated_config, Collector};
use serde_json::Value;

/// Methods an OpenAPI path item may list.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn serves_an_openapi_document_whose_get_routes_it_answers() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let (status, document) = collector.get("/openapi.json");
    assert_eq!(status, 200, "{document}");

    let version = document["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "not OpenAPI 3: {version}");
    assert_eq!(document["info"]["title"], "ohlcv-collector");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = document["paths"].as_object().expect("paths");
    assert!(!paths.is_empty(), "no paths");

    let mut answered = 0;
    for (path, item) in paths {
        let operations: Vec<(&String, &Value)> = item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, _)| METHODS.contains(&key.as_str()))
            .collect();
        assert!(!operations.is_empty(), "{path}: no operation");
        for (method, operation) in &operations {
            let responses = operation["responses"].as_object();
            assert!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path}: no responses"
            );
        }
        let has_get = operations.iter().any(|(method, _)| *method == "get");
        if !has_get || path.contains('{') {
            continue;
        }
        // `/ws` answers a plain GET (not an upgrade) with a JSON 400; the
        // dashboard's routes answer HTML and JavaScript.
        let (status, body) = collector.get_text(path);
        assert!(
            status != 404 && status != 405,
            "GET {path} is documented but answered {status}: {body}"
        );
        answered += 1;
    }
    // /health, /status, /config, /exchanges, /databaseSymbols,
    // /completeness, /openapi.json, /ws, / and /client.js at least.
    assert!(answered >= 10, "only {answered} GET routes tried");
}
