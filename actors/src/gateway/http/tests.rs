//! Route tests: every success shape and every error code, against a mock
//! supervisor and a real storage thread.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::test::{self, TestRequest};
use actix_web::App;
use ohlcv_domain::config::MAX_SYMBOLS_PER_EXCHANGE;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::*;
use crate::gateway::test_support::{candle, harness, queued, Harness, BASE_TIME};
use crate::storage::StorageChannels;

pub(crate) async fn app(
    deps: GatewayDeps,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let closing = SessionClosing(watch::channel(false).1);
    let security = Arc::new(Security::new(&deps.settings));
    test::init_service(App::new().configure(move |cfg| configure(cfg, deps, closing, security)))
        .await
}

/// Where test requests come from unless a test says otherwise: the
/// machine itself, as the collector's own clients do.
pub(crate) const LOCAL_PEER: &str = "127.0.0.1:50000";

/// Sends `req` from [`LOCAL_PEER`], returns the status and the JSON body
/// (`null` if none).
pub(crate) async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: TestRequest,
) -> (u16, Value) {
    call_from(app, req, LOCAL_PEER).await
}

/// Sends `req` from `peer`, returns the status and the JSON body (`null`
/// if none).
pub(crate) async fn call_from(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: TestRequest,
    peer: &str,
) -> (u16, Value) {
    let req = req.peer_addr(peer.parse().unwrap());
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    };
    (status, json)
}

pub(crate) fn get(path: &str) -> TestRequest {
    TestRequest::get().uri(path)
}

pub(crate) fn post(path: &str, body: Value) -> TestRequest {
    TestRequest::post().uri(path).set_json(body)
}

/// Asserts an error answer and returns its message.
#[track_caller]
pub(crate) fn error(answer: &(u16, Value), status: u16, code: &str) -> String {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    answer.1["error"]["message"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn health_status_and_system_routes_answer_in_shape() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;

    assert_eq!(
        call(&app, get("/health")).await,
        (200, json!({"status": "ok"}))
    );

    let (status, body) = call(&app, get("/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["uptime_s"], 42);
    assert_eq!(body["children"][0]["name"], "storage");
    assert_eq!(body["children"][0]["state"], "running");

    let (status, body) = call(&app, TestRequest::post().uri("/restart")).await;
    assert_eq!(status, 200);
    assert_eq!(body["restarted"], true);
    assert_eq!(body["applied"]["reloaded"], json!(["simulated"]));

    let answer = call(&app, TestRequest::post().uri("/deleteDatabase")).await;
    assert_eq!(answer, (200, json!({"deleted": true})));

    assert_eq!(control.calls(), ["status", "restart", "delete_database"]);
}

#[actix_web::test]
async fn config_is_read_and_replaced_only_when_valid() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;

    let (status, config) = call(&app, get("/config")).await;
    assert_eq!(status, 200);
    assert_eq!(
        config["exchanges"]["simulated"]["symbols"],
        json!(["BTCUSDT", "ETHUSDT"])
    );
    assert_eq!(config["batch_interval"], 60000);

    let (status, exchanges) = call(&app, get("/exchanges")).await;
    assert_eq!(status, 200);
    assert_eq!(exchanges, config["exchanges"]);

    let mut changed = config.clone();
    changed["port"] = json!(4000);
    let (status, body) = call(&app, post("/config", changed)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["port"], 4000);
    assert_eq!(body["applied"]["reloaded"], json!(["simulated"]));
    assert_eq!(control.config.lock().unwrap().port, 4000);

    let mut bad = config.clone();
    bad["batch_interval"] = json!(5);
    let message = error(
        &call(&app, post("/config", bad)).await,
        400,
        "invalid_config",
    );
    assert!(
        message.starts_with("batch_interval: 5 ms is out of range"),
        "{message}"
    );

    // The limits of the config file: 500 symbols per exchange, none twice.
    let mut too_many = config.clone();
    too_many["exchanges"]["binance_futures"]["symbols"] = (0..=MAX_SYMBOLS_PER_EXCHANGE)
        .map(|i| format!("S{i}USDT"))
        .collect();
    let message = error(
        &call(&app, post("/config", too_many)).await,
        400,
        "invalid_config",
    );
    assert_eq!(
        message,
        "exchanges.binance_futures.symbols: 501 given, at most 500 are allowed per exchange"
    );
    let mut twice = config.clone();
    twice["exchanges"]["simulated"]["symbols"] = json!(["BTCUSDT", "BTCUSDT"]);
    let message = error(
        &call(&app, post("/config", twice)).await,
        400,
        "invalid_config",
    );
    assert_eq!(
        message,
        "exchanges.simulated.symbols[1]: BTCUSDT is listed twice"
    );

    let mut unknown = config.clone();
    unknown["colour"] = json!("blue");
    let message = error(
        &call(&app, post("/config", unknown)).await,
        400,
        "invalid_config",
    );
    assert!(message.starts_with("colour: unknown field"), "{message}");

    // Malformed JSON, a missing content type and an oversized body never
    // reach the supervisor.
    let malformed = TestRequest::post()
        .uri("/config")
        .insert_header(header::ContentType::json())
        .set_payload("{\"exchanges\": ");
    let message = error(&call(&app, malformed).await, 400, "bad_request");
    assert!(message.contains("not valid JSON"), "{message}");

    let plain = TestRequest::post()
        .uri("/config")
        .set_payload(config.to_string());
    error(&call(&app, plain).await, 415, "unsupported_media_type");

    let huge = json!({"exchanges": {}, "padding": "x".repeat(70 * 1024)});
    let message = error(
        &call(&app, post("/config", huge)).await,
        413,
        "payload_too_large",
    );
    assert!(message.contains("65536"), "{message}");

    // Each POST /config that parses reads the running config first, to
    // compare the faults.
    assert_eq!(
        control.calls(),
        ["config", "config", "config", "replace_config port=4000"]
    );
}

#[actix_web::test]
async fn a_key_given_twice_in_any_body_is_refused() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;
    let cases = [
        (
            "/config",
            r#"{"exchanges":{"simulated":{"enabled":true,"symbols":["BTCUSDT"],"symbols":["ETHUSDT"]}}}"#,
            "exchanges.simulated.symbols: key listed twice",
        ),
        (
            "/exchangeSymbols",
            r#"{"exchange":"simulated","symbols":["BTCUSDT"],"symbols":["ETHUSDT"]}"#,
            "symbols: key listed twice",
        ),
        (
            "/toggleExchange",
            r#"{"exchange":"simulated","enabled":true,"enabled":false}"#,
            "enabled: key listed twice",
        ),
    ];
    for (path, body, expected) in cases {
        let req = TestRequest::post()
            .uri(path)
            .insert_header(header::ContentType::json())
            .set_payload(body);
        let message = error(&call(&app, req).await, 400, "bad_request");
        assert!(message.contains(expected), "{path}: {message}");
    }
    assert!(control.calls().is_empty(), "{:?}", control.calls());
}

#[actix_web::test]
async fn exchange_symbols_are_listed_and_validated_before_being_set() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;

    let answer = call(&app, get("/exchangeSymbols/simulated")).await;
    assert_eq!(
        answer,
        (
            200,
            json!({"exchange": "simulated", "symbols": ["BTCUSDT", "ETHUSDT"]})
        )
    );
    let message = error(
        &call(&app, get("/exchangeSymbols/kraken")).await,
        400,
        "unknown_exchange",
    );
    assert!(
        message.starts_with("exchange: unknown exchange \"kraken\""),
        "{message}"
    );

    let (status, body) = call(
        &app,
        post(
            "/exchangeSymbols",
            json!({"exchange": "simulated", "symbols": ["SOLUSDT", "BTCUSDT"]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exchange"], "simulated");
    assert_eq!(body["config"]["symbols"], json!(["SOLUSDT", "BTCUSDT"]));
    assert_eq!(body["config"]["enabled"], true);

    let too_many: Vec<String> = (0..=MAX_SYMBOLS_PER_EXCHANGE)
        .map(|i| format!("S{i}USDT"))
        .collect();
    let cases = [
        (
            json!({"exchange": "kraken", "symbols": []}),
            "unknown_exchange",
            "exchange: unknown exchange",
        ),
        (
            json!({"exchange": 7, "symbols": []}),
            "bad_request",
            "exchange: expected a string",
        ),
        (json!({"symbols": []}), "bad_request", "exchange: missing"),
        (
            json!({"exchange": "simulated"}),
            "bad_request",
            "symbols: missing",
        ),
        (
            json!({"exchange": "simulated", "symbols": "BTCUSDT"}),
            "bad_request",
            "symbols: expected an array",
        ),
        (
            json!({"exchange": "simulated", "symbols": ["BTCUSDT", "btc/usdt"]}),
            "invalid_symbol",
            "symbols[1]: \"btc/usdt\" is not a symbol like BTCUSDT",
        ),
        (
            json!({"exchange": "simulated", "symbols": ["BTCUSDT", 5]}),
            "invalid_symbol",
            "symbols[1]: expected a string",
        ),
        (
            json!({"exchange": "simulated", "symbols": ["BTCUSDT", "ETHUSDT", "BTCUSDT"]}),
            "duplicate_symbol",
            "symbols[2]: BTCUSDT is listed twice",
        ),
        (
            json!({"exchange": "simulated", "symbols": too_many}),
            "too_many_symbols",
            "symbols: 501 given, at most 500",
        ),
        (
            json!({"exchange": "simulated", "symbols": [], "x": 1}),
            "bad_request",
            "x: unknown field",
        ),
        (
            json!(["simulated"]),
            "bad_request",
            "request body must be a JSON object",
        ),
    ];
    for (body, code, prefix) in cases {
        let message = error(
            &call(&app, post("/exchangeSymbols", body.clone())).await,
            400,
            code,
        );
        assert!(message.starts_with(prefix), "{body}: {message}");
    }
    assert_eq!(
        control.calls(),
        [
            "exchange_symbols simulated",
            "set_symbols simulated [\"SOLUSDT\", \"BTCUSDT\"]"
        ]
    );
}

#[actix_web::test]
async fn exchanges_are_enabled_disabled_or_toggled() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;

    let (status, body) = call(
        &app,
        post(
            "/toggleExchange",
            json!({"exchange": "simulated", "enabled": false}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exchange"], "simulated");
    assert_eq!(body["enabled"], false);
    assert_eq!(body["config"]["enabled"], false);
    assert_eq!(body["config"]["symbols"], json!(["BTCUSDT", "ETHUSDT"]));

    let (_, body) = call(
        &app,
        post("/toggleExchange", json!({"exchange": "simulated"})),
    )
    .await;
    assert_eq!(body["enabled"], true, "omitted `enabled` toggles");
    let (_, body) = call(
        &app,
        post(
            "/toggleExchange",
            json!({"exchange": "simulated", "enabled": null}),
        ),
    )
    .await;
    assert_eq!(body["enabled"], false);

    let message = error(
        &call(
            &app,
            post(
                "/toggleExchange",
                json!({"exchange": "simulated", "enabled": "yes"}),
            ),
        )
        .await,
        400,
        "bad_request",
    );
    assert!(
        message.starts_with("enabled: expected true or false"),
        "{message}"
    );
    error(
        &call(&app, post("/toggleExchange", json!({"exchange": "nope"}))).await,
        400,
        "unknown_exchange",
    );

    assert_eq!(
        control.calls(),
        [
            "toggle_exchange simulated Some(false)",
            "toggle_exchange simulated None",
            "toggle_exchange simulated None"
        ]
    );
}

#[actix_web::test]
async fn supervisor_errors_map_to_statuses_and_codes() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;
    let cases = [
        (
            ControlError::invalid("no_adapter", "okx_futures has no adapter"),
            400,
            "no_adapter",
        ),
        (
            ControlError::Exchange("HTTP 429".into()),
            502,
            "exchange_error",
        ),
        (
            ControlError::Unavailable("restarting".into()),
            503,
            "unavailable",
        ),
        (
            ControlError::Internal("config.json: disk full".into()),
            500,
            "internal",
        ),
    ];
    for (failure, status, code) in cases {
        control.fail_with(Some(failure.clone()));
        for req in [
            get("/status"),
            get("/config"),
            get("/exchanges"),
            get("/exchangeSymbols/okx_futures"),
            post(
                "/exchangeSymbols",
                json!({"exchange": "simulated", "symbols": ["BTCUSDT"]}),
            ),
            post("/toggleExchange", json!({"exchange": "simulated"})),
            post(
                "/config",
                serde_json::from_str(crate::gateway::test_support::CONFIG).unwrap(),
            ),
            TestRequest::post().uri("/restart"),
            TestRequest::post().uri("/deleteDatabase"),
        ] {
            let message = error(&call(&app, req).await, status, code);
            assert_eq!(message, failure.to_string());
        }
    }
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let Harness { deps, .. } = harness();
    let app = app(deps).await;

    let message = error(&call(&app, get("/nope")).await, 404, "not_found");
    assert_eq!(message, "no route for GET /nope");
    error(
        &call(&app, get("/ohlcv/simulated/BTCUSDT")).await,
        404,
        "not_found",
    );

    let response =
        test::call_service(&app, TestRequest::delete().uri("/config").to_request()).await;
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET, POST");
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(
        body["error"]["message"],
        "DELETE is not allowed on /config; allowed: GET, POST"
    );

    for (method, path) in [
        (Method::POST, "/health"),
        (Method::GET, "/restart"),
        (Method::GET, "/deleteDatabase"),
        (Method::PUT, "/ohlcv/simulated/BTCUSDT/1m"),
        (Method::POST, "/databaseSymbols"),
        (Method::POST, "/completeness"),
    ] {
        error(
            &call(&app, TestRequest::default().method(method).uri(path)).await,
            405,
            "method_not_allowed",
        );
    }

    // A plain GET on the WebSocket route is refused in the same shape.
    let message = error(&call(&app, get("/ws")).await, 400, "bad_request");
    assert!(
        message.starts_with("expected a WebSocket upgrade"),
        "{message}"
    );
}

#[actix_web::test]
async fn ohlcv_validates_every_part_of_the_request() {
    let Harness { deps, .. } = harness();
    let app = app(deps).await;
    let cases = [
        (
            "/ohlcv/kraken/BTCUSDT/1m",
            "unknown_exchange",
            "exchange: unknown exchange \"kraken\"",
        ),
        (
            "/ohlcv/simulated/btcusdt/1m",
            "invalid_symbol",
            "symbol: \"btcusdt\" is not a symbol",
        ),
        ("/ohlcv/simulated/BTC-USDT/1m", "invalid_symbol", "symbol:"),
        (
            "/ohlcv/simulated/BTCUSDT/2m",
            "unknown_interval",
            "interval: unknown interval \"2m\"",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?from=abc",
            "bad_request",
            "from: \"abc\" is not a time",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?to=-5",
            "bad_request",
            "to: \"-5\" is not a time",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?from=1.5",
            "bad_request",
            "from:",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?from=10&to=9",
            "bad_range",
            "from (10) is after to (9)",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?limit=0",
            "bad_limit",
            "limit: \"0\" is not a whole number from 1 to 5000",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?limit=5001",
            "bad_limit",
            "limit: \"5001\"",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?limit=ten",
            "bad_limit",
            "limit: \"ten\"",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?limit=-1",
            "bad_limit",
            "limit:",
        ),
        (
            "/ohlcv/simulated/BTCUSDT/1m?from=1&from=2",
            "bad_request",
            "query string:",
        ),
    ];
    for (uri, code, prefix) in cases {
        let message = error(&call(&app, get(uri)).await, 400, code);
        assert!(message.starts_with(prefix), "{uri}: {message}");
    }
    // Empty values count as absent; unknown parameters are ignored.
    let answer = call(
        &app,
        get("/ohlcv/simulated/BTCUSDT/1m?from=&to=&limit=&_=123"),
    )
    .await;
    assert_eq!(answer, (200, json!([])));
}

#[actix_web::test]
async fn ohlcv_returns_stored_and_queued_candles_in_ascending_order() {
    let Harness { deps, .. } = harness();
    // Minutes 0..3 written to the database, 3..10 only queued, submitted
    // newest first to show that the answer is sorted.
    for minute in 0..3 {
        deps.storage.try_submit(candle("BTCUSDT", minute)).unwrap();
    }
    queued(&deps, 3).await;
    assert_eq!(deps.storage.flush().await.unwrap(), 3);
    for minute in (3..10).rev() {
        deps.storage.try_submit(candle("BTCUSDT", minute)).unwrap();
    }
    deps.storage.try_submit(candle("ETHUSDT", 0)).unwrap();
    queued(&deps, 8).await;
    let storage = deps.storage.clone();
    let app = app(deps).await;

    let times = |body: &Value| -> Vec<i64> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|row| (row["timestamp"].as_i64().unwrap() - BASE_TIME) / 60_000)
            .collect()
    };

    let (status, all) = call(&app, get("/ohlcv/simulated/BTCUSDT/1m")).await;
    assert_eq!(status, 200);
    assert_eq!(times(&all), (0..10).collect::<Vec<_>>());
    assert_eq!(
        all[9],
        json!({"timestamp": BASE_TIME + 9 * 60_000, "open": 109.0, "high": 111.0, "low": 108.0,
               "close": 110.0, "volume": 19.0, "closed": true})
    );

    // Without `from`: the latest `limit`, up to `to`.
    let (_, latest) = call(&app, get("/ohlcv/simulated/BTCUSDT/1m?limit=3")).await;
    assert_eq!(times(&latest), [7, 8, 9]);
    let to = BASE_TIME + 5 * 60_000;
    let (_, before) = call(
        &app,
        get(&format!("/ohlcv/simulated/BTCUSDT/1m?limit=3&to={to}")),
    )
    .await;
    assert_eq!(times(&before), [3, 4, 5]);

    // With `from`: the first `limit` from `from`.
    let from = BASE_TIME + 2 * 60_000;
    let (_, first) = call(
        &app,
        get(&format!("/ohlcv/simulated/BTCUSDT/1m?from={from}&limit=4")),
    )
    .await;
    assert_eq!(times(&first), [2, 3, 4, 5]);
    let (_, window) = call(
        &app,
        get(&format!("/ohlcv/simulated/BTCUSDT/1m?from={from}&to={to}")),
    )
    .await;
    assert_eq!(times(&window), [2, 3, 4, 5]);

    // Other series are separate; an unknown series is empty, not an error.
    let (_, eth) = call(&app, get("/ohlcv/simulated/ETHUSDT/1m")).await;
    assert_eq!(times(&eth), [0]);
    assert_eq!(
        call(&app, get("/ohlcv/simulated/BTCUSDT/5m")).await,
        (200, json!([]))
    );
    assert_eq!(
        call(&app, get("/ohlcv/binance_futures/BTCUSDT/1m")).await,
        (200, json!([]))
    );

    // Series as stored (the storage thread's summary of series that are
    // partly queued is its own business; flush to compare exactly).
    let (status, _) = call(&app, get("/databaseSymbols")).await;
    assert_eq!(status, 200);
    assert_eq!(storage.flush().await.unwrap(), 8);
    let (status, series) = call(&app, get("/databaseSymbols")).await;
    assert_eq!(status, 200);
    assert_eq!(
        series,
        json!([
            {"exchange": "simulated", "symbol": "BTCUSDT", "interval": "1m", "count": 10,
             "first": BASE_TIME, "last": BASE_TIME + 9 * 60_000},
            {"exchange": "simulated", "symbol": "ETHUSDT", "interval": "1m", "count": 1,
             "first": BASE_TIME, "last": BASE_TIME},
        ])
    );
}

#[actix_web::test]
async fn a_missing_storage_thread_is_unavailable() {
    let Harness { mut deps, .. } = harness();
    // Channels without a thread: dropping them leaves a handle to nobody.
    let rescue = ohlcv_storage::rescue::RescueFile::for_database(std::path::Path::new("unused.db"));
    deps.storage = StorageChannels::new(rescue).handle();
    let app = app(deps).await;
    let message = error(
        &call(&app, get("/ohlcv/simulated/BTCUSDT/1m")).await,
        503,
        "unavailable",
    );
    assert_eq!(message, "storage is not running");
    error(
        &call(&app, get("/databaseSymbols")).await,
        503,
        "unavailable",
    );
    error(&call(&app, get("/completeness")).await, 503, "unavailable");
}

#[actix_web::test]
async fn completeness_counts_queued_candles_and_filters_by_series() {
    let Harness { deps, .. } = harness();
    // BTCUSDT: minutes 0..=2 written, 5, 6, 8 and 9 only queued, 3 and 4
    // missing, 7 an exchange hole.
    for minute in [0, 1, 2] {
        deps.storage.try_submit(candle("BTCUSDT", minute)).unwrap();
    }
    queued(&deps, 3).await;
    deps.storage.flush().await.unwrap();
    for minute in [5, 6, 8, 9] {
        deps.storage.try_submit(candle("BTCUSDT", minute)).unwrap();
    }
    deps.storage.try_submit(candle("ETHUSDT", 0)).unwrap();
    queued(&deps, 5).await;
    let btc = candle("BTCUSDT", 0).key;
    deps.storage
        .record_exchange_hole(btc, BASE_TIME + 7 * 60_000, BASE_TIME + 7 * 60_000)
        .await
        .unwrap();
    let app = app(deps).await;

    let (status, all) = call(&app, get("/completeness")).await;
    assert_eq!(status, 200, "{all}");
    let rows = all.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{all}");
    let btc = &rows[0];
    let age = btc["newest_closed_age_ms"].as_i64().unwrap();
    assert!(age > 0, "{btc}");
    assert_eq!(
        btc,
        &json!({"exchange": "simulated", "symbol": "BTCUSDT", "interval": "1m",
                "first_open_time": BASE_TIME, "last_open_time": BASE_TIME + 9 * 60_000,
                "expected": 10, "stored": 7, "missing": 2,
                "exchange_holes": 1, "exchange_hole_candles": 1,
                "newest_closed_open_time": BASE_TIME + 9 * 60_000,
                "newest_closed_age_ms": age})
    );
    assert_eq!(rows[1]["symbol"], "ETHUSDT");
    assert_eq!(rows[1]["missing"], 0);

    let symbols = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|row| row["symbol"].as_str().unwrap().to_owned())
            .collect()
    };
    for (query, want) in [
        ("?symbol=ETHUSDT", vec!["ETHUSDT"]),
        (
            "?exchange=simulated&interval=1m",
            vec!["BTCUSDT", "ETHUSDT"],
        ),
        (
            "?exchange=simulated&symbol=BTCUSDT&interval=1m",
            vec!["BTCUSDT"],
        ),
        ("?interval=5m", vec![]),
        ("?exchange=binance_futures", vec![]),
        ("?exchange=&symbol=&_=123", vec!["BTCUSDT", "ETHUSDT"]),
    ] {
        let (status, body) = call(&app, get(&format!("/completeness{query}"))).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(symbols(&body), want, "{query}");
    }
    for (query, code) in [
        ("?exchange=kraken", "unknown_exchange"),
        ("?symbol=BTC/USDT", "invalid_symbol"),
        ("?interval=7m", "unknown_interval"),
    ] {
        let message = error(
            &call(&app, get(&format!("/completeness{query}"))).await,
            400,
            code,
        );
        assert!(
            message.contains(&query[1..query.find('=').unwrap()]),
            "{message}"
        );
    }
}

#[test]
fn ohlcv_queries_follow_the_documented_defaults() {
    let params = OhlcvParams::default();
    let (key, query) = parse_ohlcv("simulated", "BTCUSDT", "1h", &params).unwrap();
    assert_eq!(key.to_string(), "simulated/BTCUSDT/1h");
    assert_eq!(
        query,
        CandleQuery {
            from: None,
            to: None,
            limit: DEFAULT_OHLCV_LIMIT
        }
    );
    let params = OhlcvParams {
        from: Some("0".into()),
        to: Some("0".into()),
        limit: Some("5000".into()),
    };
    let (_, query) = parse_ohlcv("simulated", "BTCUSDT", "1h", &params).unwrap();
    assert_eq!(
        query,
        CandleQuery {
            from: Some(0),
            to: Some(0),
            limit: MAX_OHLCV_LIMIT
        }
    );
}

/// The token the auth tests configure.
const TOKEN: &str = "test-token-0123456789";

fn with_token(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
}

/// One request to each mutating route, with a body that would succeed.
fn mutating_requests() -> Vec<(&'static str, TestRequest)> {
    let config: Value = serde_json::from_str(crate::gateway::test_support::CONFIG).unwrap();
    vec![
        ("replace_config port=3000", post("/config", config)),
        (
            "set_symbols simulated [\"BTCUSDT\"]",
            post(
                "/exchangeSymbols",
                json!({"exchange": "simulated", "symbols": ["BTCUSDT"]}),
            ),
        ),
        (
            "toggle_exchange simulated Some(true)",
            post(
                "/toggleExchange",
                json!({"exchange": "simulated", "enabled": true}),
            ),
        ),
        ("restart", TestRequest::post().uri("/restart")),
        (
            "delete_database",
            TestRequest::post().uri("/deleteDatabase"),
        ),
    ]
}

#[actix_web::test]
async fn mutating_routes_need_the_token_once_one_is_set() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;
    // Open without a token: no header needed.
    for (_, req) in mutating_requests() {
        assert_eq!(call(&app, req).await.0, 200);
    }
    control.set_token(Some(TOKEN));
    control.calls.lock().unwrap().clear();

    for (expected_call, _) in mutating_requests() {
        let fresh = || {
            mutating_requests()
                .into_iter()
                .find(|(c, _)| *c == expected_call)
                .unwrap()
                .1
        };
        // No token: 401 with a Bearer challenge, and the supervisor is
        // never asked.
        let response = test::call_service(&app, fresh().to_request()).await;
        assert_eq!(response.status().as_u16(), 401, "{expected_call}");
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            r#"Bearer realm="ohlcv-collector""#
        );
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("needs the api_token") && message.contains("Authorization: Bearer"),
            "{message}"
        );
        // Other schemes and empty bearer tokens are no token either.
        for value in [
            format!("Basic {TOKEN}"),
            "Bearer ".to_owned(),
            TOKEN.to_owned(),
        ] {
            let req = fresh().insert_header((header::AUTHORIZATION, value.clone()));
            error(&call(&app, req).await, 401, "unauthorized");
        }
        // A wrong token: 403, and the token tried is not echoed.
        for wrong in ["test-token-0123456788", "test-token-01234567890", "qqq"] {
            let message = error(
                &call(&app, with_token(fresh(), wrong)).await,
                403,
                "forbidden",
            );
            assert!(!message.contains(wrong), "{message}");
        }
        assert!(control.calls().is_empty(), "{:?}", control.calls());

        // The token: the command runs. The scheme is case-insensitive.
        let (status, body) = call(&app, with_token(fresh(), TOKEN)).await;
        assert_eq!(status, 200, "{expected_call}: {body}");
        let lower = fresh().insert_header((header::AUTHORIZATION, format!("bearer  {TOKEN}")));
        assert_eq!(call(&app, lower).await.0, 200, "{expected_call}");
        let calls = control.calls();
        let commands: Vec<&String> = calls.iter().filter(|c| *c != "config").collect();
        assert_eq!(commands, [expected_call, expected_call]);
        control.calls.lock().unwrap().clear();
        if expected_call.starts_with("replace_config") {
            // The posted config had no token: that removed it.
            control.set_token(Some(TOKEN));
        }
    }

    // The check comes before the body is read: a malformed body without
    // the token is a 401, not a 400.
    let malformed = TestRequest::post()
        .uri("/config")
        .insert_header(header::ContentType::json())
        .set_payload("{\"exchanges\": ");
    error(&call(&app, malformed).await, 401, "unauthorized");

    // The token cannot be known: refused, not let through.
    control.fail_with(Some(ControlError::Unavailable("restarting".into())));
    let (_, req) = mutating_requests().remove(2);
    error(
        &call(&app, with_token(req, TOKEN)).await,
        503,
        "unavailable",
    );
    let (_, req) = mutating_requests().remove(2);
    error(&call(&app, req).await, 503, "unavailable");
}

#[actix_web::test]
async fn read_only_routes_stay_open_with_a_token() {
    let Harness { deps, control, .. } = harness();
    control.set_token(Some(TOKEN));
    let app = app(deps).await;
    for path in [
        "/health",
        "/status",
        "/config",
        "/exchanges",
        "/exchangeSymbols/simulated",
        "/ohlcv/simulated/BTCUSDT/1m",
        "/databaseSymbols",
        "/completeness",
    ] {
        let (status, body) = call(&app, get(path)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // A wrong method is still a 405, not a 401.
    error(
        &call(&app, get("/restart")).await,
        405,
        "method_not_allowed",
    );
    // A wrong token on a read is ignored, as any header is.
    let (status, _) = call(&app, with_token(get("/status"), "nope")).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn the_token_is_never_shown_and_a_masked_one_is_kept() {
    let Harness { deps, control, .. } = harness();
    let app = app(deps).await;

    // No token: none shown.
    let (_, config) = call(&app, get("/config")).await;
    assert!(config.get("api_token").is_none(), "{config}");

    control.set_token(Some(TOKEN));
    let (status, config) = call(&app, get("/config")).await;
    assert_eq!(status, 200);
    assert_eq!(config["api_token"], API_TOKEN_MASK);
    let (_, exchanges) = call(&app, get("/exchanges")).await;
    for body in [&config, &exchanges] {
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }

    // Posting back what was read keeps the token; the answer masks it.
    let mut edited = config.clone();
    edited["port"] = json!(4000);
    let (status, body) = call(&app, with_token(post("/config", edited), TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["api_token"], API_TOKEN_MASK);
    assert!(!body.to_string().contains(TOKEN), "{body}");
    let running = control.config.lock().unwrap().clone();
    assert_eq!(running.port, 4000);
    assert_eq!(
        running.api_token,
        Some(ohlcv_domain::config::ApiToken::new(TOKEN).unwrap())
    );

    // A new value replaces it, at once: the old token stops working.
    let new_token = "another-token-9876543210";
    let mut replaced = config.clone();
    replaced["api_token"] = json!(new_token);
    let (status, body) = call(&app, with_token(post("/config", replaced), TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(new_token), "{body}");
    error(
        &call(&app, with_token(TestRequest::post().uri("/restart"), TOKEN)).await,
        403,
        "forbidden",
    );
    assert_eq!(
        call(
            &app,
            with_token(TestRequest::post().uri("/restart"), new_token)
        )
        .await
        .0,
        200
    );

    // A bad new value is refused naming the key, without quoting it.
    let mut bad = config.clone();
    bad["api_token"] = json!("short secret");
    let message = error(
        &call(&app, with_token(post("/config", bad), new_token)).await,
        400,
        "invalid_config",
    );
    assert!(message.starts_with("api_token: "), "{message}");
    assert!(!message.contains("short secret"), "{message}");

    // A body without the key removes the token: the routes open again.
    let mut open = config.clone();
    open.as_object_mut().unwrap().remove("api_token");
    let (status, body) = call(&app, with_token(post("/config", open), new_token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["config"].get("api_token").is_none(), "{body}");
    assert_eq!(control.config.lock().unwrap().api_token, None);
    assert_eq!(call(&app, TestRequest::post().uri("/restart")).await.0, 200);

    // The mask with no token set keeps none.
    let (status, body) = call(&app, post("/config", config.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(control.config.lock().unwrap().api_token, None);
}

#[test]
fn bearer_tokens_are_read_from_the_authorization_header() {
    let token_of = |value: Option<&str>| {
        let mut req = TestRequest::get();
        if let Some(value) = value {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        bearer_token(req.to_http_request().headers()).map(<[u8]>::to_vec)
    };
    assert_eq!(token_of(Some("Bearer abc")), Some(b"abc".to_vec()));
    assert_eq!(token_of(Some("BEARER   abc")), Some(b"abc".to_vec()));
    assert_eq!(token_of(Some("Bearer a b")), Some(b"a b".to_vec()));
    for value in [
        None,
        Some("Bearer"),
        Some("Bearer "),
        Some("Basic abc"),
        Some("abc"),
    ] {
        assert_eq!(token_of(value), None, "{value:?}");
    }
}

/// Sends `req` from [`LOCAL_PEER`] and returns the raw answer: the
/// `Content-Encoding` and `Vary` headers and the body bytes as sent.
async fn raw_call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: TestRequest,
) -> (Option<String>, Option<String>, Vec<u8>) {
    let req = req.peer_addr(LOCAL_PEER.parse().unwrap());
    let response = test::call_service(app, req.to_request()).await;
    assert_eq!(response.status().as_u16(), 200);
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let encoding = header_text(header::CONTENT_ENCODING);
    let vary = header_text(header::VARY);
    let body = test::read_body(response).await.to_vec();
    (encoding, vary, body)
}

#[actix_web::test]
async fn large_answers_are_gzipped_for_clients_that_accept_it_and_small_ones_are_not() {
    use std::io::Read;
    let Harness { deps, .. } = harness();
    for minute in 0..1000 {
        deps.storage.try_submit(candle("BTCUSDT", minute)).unwrap();
    }
    deps.storage.try_submit(candle("ETHUSDT", 0)).unwrap();
    queued(&deps, 1001).await;
    let app = app(deps).await;
    let large = "/ohlcv/simulated/BTCUSDT/1m?limit=1000";
    let small = "/ohlcv/simulated/ETHUSDT/1m";

    let (encoding, vary, identity) = raw_call(&app, get(large)).await;
    assert_eq!(encoding, None, "no Accept-Encoding: identity");
    assert!(vary.unwrap().contains("Accept-Encoding"));
    assert!(identity.len() >= GZIP_MIN_BODY, "{} bytes", identity.len());
    let rows: Vec<OhlcvRow> = serde_json::from_slice(&identity).unwrap();
    assert_eq!(rows.len(), 1000);

    let accepting = get(large).insert_header((header::ACCEPT_ENCODING, "br;q=1.0, gzip;q=0.8"));
    let (encoding, vary, gzipped) = raw_call(&app, accepting).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(vary.unwrap().contains("Accept-Encoding"));
    assert!(
        gzipped.len() < identity.len() / 3,
        "{} bytes",
        gzipped.len()
    );
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, identity, "the same body, compressed");

    let refusing = get(large).insert_header((header::ACCEPT_ENCODING, "gzip;q=0, *;q=1"));
    assert_eq!(
        raw_call(&app, refusing).await.0,
        None,
        "gzip;q=0 refuses gzip"
    );

    let small_accepting = get(small).insert_header((header::ACCEPT_ENCODING, "gzip"));
    let (encoding, _, body) = raw_call(&app, small_accepting).await;
    assert_eq!(encoding, None, "a small answer is not worth compressing");
    assert_eq!(
        serde_json::from_slice::<Vec<OhlcvRow>>(&body)
            .unwrap()
            .len(),
        1
    );

    let symbols = get("/databaseSymbols").insert_header((header::ACCEPT_ENCODING, "gzip"));
    let (_, vary, body) = raw_call(&app, symbols).await;
    assert!(
        vary.unwrap().contains("Accept-Encoding"),
        "databaseSymbols goes through the same answer"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn accept_encoding_weights_decide_whether_gzip_is_acceptable() {
    let accepts = |value: &str| {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        accepts_gzip(&headers)
    };
    assert!(accepts("gzip"));
    assert!(accepts("deflate, gzip;q=0.5"));
    assert!(accepts("x-gzip"));
    assert!(accepts("*"));
    assert!(accepts("GZIP;Q=1"));
    assert!(!accepts("gzip;q=0"));
    assert!(!accepts("gzip;q=0.000"));
    assert!(!accepts("br"));
    assert!(!accepts("*;q=1, gzip;q=0"));
    assert!(!accepts("gzip;q=nonsense"));
    assert!(!accepts("gzip;q=0.5, identity;q=1"));
    assert!(accepts("gzip;q=1, identity;q=0.5"));
    assert!(!accepts(""));
    assert!(!accepts_gzip(&header::HeaderMap::new()));
}
