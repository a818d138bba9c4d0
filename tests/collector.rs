//! End-to-end tests: the real binary, the simulated exchange, a real SQLite
//! file, and HTTP and WebSocket clients on loopback.

mod common;

use common::simulator::{assert_exact_and_contiguous, from_row, key, step_of};
use common::{file_bytes, simulated_config, wait_for, Collector, PATIENCE};
use ohlcv_actors::metrics::{DatasourceMetrics, GatewayMetrics, MonitorMetrics, StorageMetrics};
use ohlcv_actors::storage::StorageStats;
use ohlcv_domain::Interval;
use serde_json::{json, Value};

const SEED: u64 = 7;

fn simulated_candles(collector: &Collector, symbol: &str) -> Vec<ohlcv_domain::Candle> {
    let key = key(symbol, Interval::M1);
    collector
        .candles("simulated", symbol, "1m", "?limit=5000")
        .iter()
        .map(|row| from_row(&key, row))
        .collect()
}

/// The test config with the simulated exchange injecting `faults`.
fn faulty_config(faults: Value) -> Value {
    simulated_config(|c| c["exchanges"]["simulated"]["simulation"]["faults"] = faults)
}

/// The simulated 1m candles of `symbol` in the database file, read with the
/// seed's own query on the `ohlcv` view.
fn stored_candles(database: &std::path::Path, symbol: &str) -> Vec<ohlcv_domain::Candle> {
    let key = key(symbol, Interval::M1);
    let connection = rusqlite::Connection::open(database).unwrap();
    let mut query = connection
        .prepare(
            "SELECT * FROM ohlcv WHERE exchange=? AND symbol=? AND interval=? ORDER BY timestamp",
        )
        .unwrap();
    let rows = query
        .query_map(rusqlite::params!["simulated", symbol, "1m"], |row| {
            assert_eq!(row.get::<_, String>("exchange")?, "simulated");
            assert_eq!(row.get::<_, String>("symbol")?, symbol);
            assert_eq!(row.get::<_, String>("interval")?, "1m");
            Ok(json!({
                "timestamp": row.get::<_, i64>("timestamp")?,
                "open": row.get::<_, f64>("open")?,
                "high": row.get::<_, f64>("high")?,
                "low": row.get::<_, f64>("low")?,
                "close": row.get::<_, f64>("close")?,
                "volume": row.get::<_, f64>("volume")?,
                "closed": row.get::<_, i64>("closed")? == 1,
            }))
        })
        .unwrap();
    rows.map(|row| from_row(&key, &row.unwrap())).collect()
}

/// Waits until the simulated datasource has been restarted and delivers
/// again; answers its status.
fn restarted_datasource(collector: &Collector) -> Value {
    wait_for("the supervisor to restart the datasource", PATIENCE, || {
        let child = collector.child_status("simulated")?;
        (child["restarts"].as_u64()? >= 1
            && child["state"] == "running"
            && datasource_metrics(&child).is_some_and(|m| m.updates > 0))
        .then_some(child)
    })
}

/// Both configured series on `/ohlcv` are the simulator's, without a gap.
fn assert_both_series_exact(collector: &Collector) {
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        assert_exact_and_contiguous(SEED, &simulated_candles(collector, symbol));
    }
}

/// The datasource's counters in its `/status` entry; `None` before its
/// first heartbeat.
fn datasource_metrics(child: &Value) -> Option<DatasourceMetrics> {
    common::metrics(child)
}

/// The storage thread's counters in its `/status` entry; `None` before its
/// first heartbeat.
fn storage_stats(child: &Value) -> Option<StorageStats> {
    common::metrics::<StorageMetrics>(child).map(|m| m.stats)
}

#[test]
fn serves_backfilled_and_live_candles_over_http_and_websocket() {
    // Nothing is written to disk during the test: /ohlcv must show queued
    // candles.
    let collector = Collector::start(&simulated_config(|c| {
        c["batch_interval"] = json!(3_600_000)
    }));
    let mut ws = collector.ws();
    // A new client first gets the recent log lines.
    let log = ws.wait_for("a log line", PATIENCE, |m| m["type"] == "log");
    assert!(
        log["data"]["message"].is_string() && log["data"]["timestamp"].is_string(),
        "{log}"
    );
    assert!(
        ["info", "success", "warn", "error"].contains(&log["data"]["type"].as_str().unwrap()),
        "{log}"
    );

    let candles = wait_for("bootstrap history on /ohlcv", PATIENCE, || {
        let candles = simulated_candles(&collector, "BTCUSDT");
        (candles.len() >= 120).then_some(candles)
    });
    assert_exact_and_contiguous(SEED, &candles);
    let first_open = candles.last().unwrap().clone();

    let candle = ws.wait_for("a candle message", PATIENCE, |m| m["type"] == "candle");
    let data = &candle["data"];
    assert_eq!(data["exchange"], "simulated");
    assert_eq!(data["interval"], "1m");
    for field in ["t", "o", "h", "l", "c", "v"] {
        assert!(data[field].is_number(), "{field} missing in {candle}");
    }
    assert!(data["closed"].is_boolean());

    let info = ws.wait_for("system_info", PATIENCE, |m| m["type"] == "system_info");
    let data = &info["data"];
    assert!(data["cpu"]["cores"].as_u64().unwrap() >= 1, "{info}");
    assert!(data["memory"]["total"].as_u64().unwrap() > 0, "{info}");
    assert!(data["process"]["rss"].as_u64().unwrap() > 0, "{info}");
    assert!(data["database"]["total"].is_number(), "{info}");
    assert!(
        data["platform"].is_string() && data["arch"].is_string(),
        "{info}"
    );

    // Every child is alive and says so.
    wait_for("a heartbeat from every child", PATIENCE, || {
        let (status, body) = collector.get("/status");
        assert_eq!(status, 200);
        let children = body["children"].as_array()?.clone();
        let names: Vec<_> = children.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["storage", "monitor", "gateway", "simulated"]);
        children
            .iter()
            .all(|c| c["state"] == "running" && c["last_heartbeat"].is_i64())
            .then_some(())
    });

    // The open candle keeps moving on /ohlcv as live updates arrive.
    wait_for(
        "a live update of the open candle on /ohlcv",
        PATIENCE,
        || {
            let candles = simulated_candles(&collector, "BTCUSDT");
            let last = candles.last()?.clone();
            (last.open_time > first_open.open_time
                || step_of(SEED, &last) > step_of(SEED, &first_open))
            .then_some(())
        },
    );
}

#[test]
fn sigterm_saves_every_candle_with_its_last_values() {
    // A batch interval of an hour: everything must come from the final flush.
    let collector = Collector::start(&simulated_config(|c| {
        c["batch_interval"] = json!(3_600_000)
    }));
    let mut ws = collector.ws();
    let mut seen = 0;
    let mut last_seen = std::collections::HashMap::new();
    wait_for("live updates on the WebSocket", PATIENCE, || {
        let message = ws.next()?;
        if message["type"] == "candle" {
            seen += 1;
            let data = &message["data"];
            last_seen.insert(data["symbol"].as_str()?.to_owned(), data["t"].as_i64()?);
        }
        (seen >= 40 && last_seen.len() == 2).then_some(())
    });
    let storage = wait_for("the storage queue to hold the history", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.queued >= 240).then_some(stats)
    });
    assert_eq!(
        storage.flushes, 0,
        "nothing is written before the stop: {storage:?}"
    );

    let (exit, stderr, dir) = collector.terminate();
    assert!(exit.success(), "exit {exit:?}; stderr:\n{stderr}");
    assert!(stderr.contains("every queued candle saved"), "{stderr}");

    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let candles = stored_candles(&dir.path().join("data/ohlcv.db"), symbol);
        assert!(candles.len() >= 120, "{symbol}: {} candles", candles.len());
        assert_exact_and_contiguous(SEED, &candles);
        let newest = candles.last().unwrap();
        assert!(
            newest.open_time >= last_seen[symbol],
            "{symbol}: the newest candle a client saw is missing"
        );
    }
}

#[test]
fn a_panicking_datasource_is_restarted_and_the_series_has_no_gap() {
    let collector = Collector::start(&faulty_config(json!({"panic_after_updates": 30})));
    let child = restarted_datasource(&collector);
    let error = child["last_error"].as_str().unwrap();
    assert!(
        error.contains("panicked") && error.contains("simulated fault"),
        "{child}"
    );
    assert_both_series_exact(&collector);
}

#[test]
fn a_stalled_datasource_is_restarted_after_three_missed_heartbeats() {
    let collector = Collector::start(&faulty_config(
        json!({"block_after_updates": 20, "block_ms": 30_000}),
    ));
    let child = restarted_datasource(&collector);
    assert!(
        child["last_error"]
            .as_str()
            .unwrap()
            .contains("missed 3 heartbeats"),
        "{child}"
    );
    assert_both_series_exact(&collector);
}

#[test]
fn dropped_and_silent_streams_reconnect() {
    let collector = Collector::start(&faulty_config(
        json!({"drop_stream_after_updates": 20, "silence_after_updates": 200}),
    ));
    let child = wait_for("two reconnects", PATIENCE, || {
        let child = collector.child_status("simulated")?;
        let metrics = datasource_metrics(&child)?;
        (metrics.reconnects >= 2 && metrics.state == "streaming").then_some(child)
    });
    assert_eq!(
        child["restarts"], 0,
        "a reconnect is not a restart: {child}"
    );
    assert!(
        collector.stderr().contains("stream silent"),
        "{}",
        collector.stderr()
    );
    assert_both_series_exact(&collector);
}

#[test]
fn exchanges_toggle_and_symbols_reload_while_running() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let mut ws = collector.ws();
    wait_for("the datasource to run", PATIENCE, || {
        (collector.child_status("simulated")?["state"] == "running").then_some(())
    });

    let (status, body) = collector.get("/exchangeSymbols/simulated");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["symbols"]
            .as_array()
            .unwrap()
            .contains(&json!("SOLUSDT")),
        "{body}"
    );
    // An exchange that cannot be reached says so (nothing listens there).
    let (status, body) = collector.get("/exchangeSymbols/binance_futures");
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "exchange_error");
    let (status, body) = collector.get("/exchanges");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["simulated"]["enabled"], true, "{body}");

    let (status, body) = collector.post(
        "/toggleExchange",
        &json!({"exchange": "simulated", "enabled": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(
        collector.child_status("simulated").unwrap()["state"],
        "stopped"
    );
    let saved: Value = serde_json::from_slice(&file_bytes(&collector.config_path())).unwrap();
    assert_eq!(saved["exchanges"]["simulated"]["enabled"], false);
    assert!(collector.dir.path().join("config.json.bak").exists());

    let (status, body) = collector.post("/toggleExchange", &json!({"exchange": "simulated"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
    wait_for("the datasource to run again", PATIENCE, || {
        (collector.child_status("simulated")?["state"] == "running").then_some(())
    });

    let (status, body) = collector.post(
        "/exchangeSymbols",
        &json!({"exchange": "simulated", "symbols": ["BTCUSDT", "SOLUSDT"]}),
    );
    assert_eq!(status, 200, "{body}");
    ws.wait_for("reload_progress for SOLUSDT", PATIENCE, |m| {
        m["type"] == "reload_progress"
            && m["data"]["message"]
                .as_str()
                .is_some_and(|s| s.contains("SOLUSDT"))
    });
    let done = ws.wait_for("reload_progress: streaming", PATIENCE, |m| {
        m["type"] == "reload_progress" && m["data"]["status"] == "streaming"
    });
    assert_eq!(done["data"]["exchange"], "simulated");
    assert_eq!(done["data"]["progress"], 100);
    let sol = wait_for("SOLUSDT history", PATIENCE, || {
        let candles = simulated_candles(&collector, "SOLUSDT");
        (candles.len() >= 120).then_some(candles)
    });
    assert_exact_and_contiguous(SEED, &sol);
    let saved: Value = serde_json::from_slice(&file_bytes(&collector.config_path())).unwrap();
    assert_eq!(
        saved["exchanges"]["simulated"]["symbols"],
        json!(["BTCUSDT", "SOLUSDT"])
    );

    // A real exchange can be enabled; an unreachable one keeps retrying
    // without disturbing the others.
    let (status, body) = collector.post(
        "/toggleExchange",
        &json!({"exchange": "binance_futures", "enabled": true}),
    );
    assert_eq!(status, 200, "{body}");
    wait_for(
        "the binance datasource to report its failure",
        PATIENCE,
        || {
            let child = collector.child_status("binance_futures")?;
            child["metrics"]["lastError"].as_str().map(str::to_owned)
        },
    );
    assert_eq!(
        collector.child_status("simulated").unwrap()["state"],
        "running"
    );
}

#[test]
fn an_api_token_protects_the_mutating_routes_and_follows_config_changes() {
    const TOKEN: &str = "e2e-token-0123456789abcdef";
    let collector = Collector::start(&simulated_config(|c| c["api_token"] = json!(TOKEN)));
    wait_for("the datasource to run", PATIENCE, || {
        (collector.child_status("simulated")?["state"] == "running").then_some(())
    });
    let disable = json!({"exchange": "simulated", "enabled": false});
    let before = file_bytes(&collector.config_path());

    // Without the token: 401, and nothing changes.
    let (status, body) = collector.post("/toggleExchange", &disable);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) =
        collector.post_with_token("/toggleExchange", &disable, "wrong-token-0123456789");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(file_bytes(&collector.config_path()), before);
    assert!(!collector.dir.path().join("config.json.bak").exists());
    assert_eq!(
        collector.child_status("simulated").unwrap()["state"],
        "running"
    );

    // Reads stay open, and never show the token.
    let (status, config) = collector.get("/config");
    assert_eq!(status, 200);
    assert_eq!(config["api_token"], "***");
    assert_eq!(collector.get("/health").0, 200);

    // With the token: it works, and the saved file keeps the token.
    let (status, body) = collector.post_with_token("/toggleExchange", &disable, TOKEN);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(
        collector.child_status("simulated").unwrap()["state"],
        "stopped"
    );
    let saved: Value = serde_json::from_slice(&file_bytes(&collector.config_path())).unwrap();
    assert_eq!(saved["exchanges"]["simulated"]["enabled"], false);
    assert_eq!(saved["api_token"], TOKEN);

    // A new token posted through /config is in force at once, and the
    // config read back (with the mask) keeps it.
    let rotated = "rotated-token-0123456789";
    let mut new_config = config.clone();
    new_config["api_token"] = json!(rotated);
    let (status, body) = collector.post_with_token("/config", &new_config, TOKEN);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["api_token"], "***");
    let (status, _) = collector.post_with_token("/toggleExchange", &disable, TOKEN);
    assert_eq!(status, 403);
    let (status, body) = collector.post_with_token("/config", &config, rotated);
    assert_eq!(status, 200, "{body}");
    let saved: Value = serde_json::from_slice(&file_bytes(&collector.config_path())).unwrap();
    assert_eq!(saved["api_token"], rotated, "*** keeps the running token");

    // /restart re-reads the file: a token edited there takes over.
    let edited = "edited-in-the-file-0123456789";
    let mut file = saved.clone();
    file["api_token"] = json!(edited);
    std::fs::write(collector.config_path(), file.to_string()).unwrap();
    let (status, body) = collector.post_with_token("/restart", &json!({}), rotated);
    assert_eq!(status, 200, "{body}");
    let (status, _) = collector.post_with_token("/toggleExchange", &disable, rotated);
    assert_eq!(status, 403);
    let (status, body) = collector.post_with_token("/toggleExchange", &disable, edited);
    assert_eq!(status, 200, "{body}");

    let stderr = collector.stderr();
    for secret in [TOKEN, rotated, edited] {
        assert!(!stderr.contains(secret), "a token was logged:\n{stderr}");
    }
}

#[test]
fn bad_requests_get_documented_errors_and_change_nothing() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let config_before = collector.get("/config").1;
    let file_before = file_bytes(&collector.config_path());

    let cases = [
        ("/ohlcv/kraken/BTCUSDT/1m", "unknown_exchange"),
        ("/ohlcv/simulated/btc-usdt/1m", "invalid_symbol"),
        ("/ohlcv/simulated/BTCUSDT/2m", "unknown_interval"),
        ("/ohlcv/simulated/BTCUSDT/1m?from=200&to=100", "bad_range"),
        ("/ohlcv/simulated/BTCUSDT/1m?limit=0", "bad_limit"),
        ("/ohlcv/simulated/BTCUSDT/1m?limit=1000000", "bad_limit"),
        ("/ohlcv/simulated/BTCUSDT/1m?from=yesterday", "bad_request"),
        ("/exchangeSymbols/kraken", "unknown_exchange"),
    ];
    for (path, code) in cases {
        let (status, body) = collector.get(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, body) = collector.get("/no/such/route");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let mut bad_config = config_before.clone();
    bad_config["batch_interval"] = json!(1);
    let (status, body) = collector.post("/config", &bad_config);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("batch_interval:"),
        "{body}"
    );

    let (status, body) = collector.post_raw("/config", "{not json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");

    let (status, body) = collector.post(
        "/exchangeSymbols",
        &json!({"exchange": "simulated", "symbols": ["BTCUSDT", "BTC/USDT"]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("symbols[1]"),
        "{body}"
    );

    assert_eq!(collector.get("/config").1, config_before);
    assert_eq!(file_bytes(&collector.config_path()), file_before);
    assert!(!collector.dir.path().join("config.json.bak").exists());
    assert_eq!(collector.child_status("simulated").unwrap()["restarts"], 0);
}

#[test]
fn bad_config_files_are_refused_naming_the_key() {
    let cases: [(Value, &str); 5] = [
        (
            simulated_config(|c| c["exchanges"]["simulated"]["symbols"][1] = json!("ETH/USDT")),
            "exchanges.simulated.symbols[1]",
        ),
        (
            simulated_config(|c| {
                c["exchanges"]["okx_futures"] = json!({"enabled": true, "ws_url": 7})
            }),
            "exchanges.okx_futures.ws_url",
        ),
        (
            simulated_config(|c| c["intervals"] = json!(["1m", "7m"])),
            "intervals[1]",
        ),
        (
            simulated_config(|c| c["batch_interval"] = json!(0)),
            "batch_interval",
        ),
        (simulated_config(|c| c["colour"] = json!("blue")), "colour"),
    ];
    for (config, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let output = std::process::Command::new(common::binary())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}: accepted");
        assert!(stderr.contains(key), "{key}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{key}: the database was created"
        );
    }
}

#[test]
fn a_missing_config_file_is_reported_with_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.json");
    let output = std::process::Command::new(common::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        line.contains("refused") && line.contains("missing.json"),
        "{line}"
    );
    // The OS error once, not repeated by each layer that wraps it.
    assert_eq!(line.matches("(os error").count(), 1, "{line}");
}

#[test]
fn a_newer_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let database = dir.path().join("data/ohlcv.db");
    {
        let connection = rusqlite::Connection::open(&database).unwrap();
        connection
            .execute_batch(&format!(
                "PRAGMA application_id = {}; PRAGMA user_version = 99; CREATE TABLE future(x);",
                ohlcv_storage_application_id()
            ))
            .unwrap();
    }
    let before = file_bytes(&database);
    std::fs::write(
        dir.path().join("config.json"),
        simulated_config(|_| {}).to_string(),
    )
    .unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["run", "--config"])
        .arg(dir.path().join("config.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("database") && stderr.contains("99"),
        "{stderr}"
    );
    assert_eq!(file_bytes(&database), before);
}

fn ohlcv_storage_application_id() -> i64 {
    0x4F48_4C43
}

#[test]
fn websocket_commands_are_answered() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let mut ws = collector.ws();
    let mut ask = |command: &str| {
        ws.send(&json!({"type": "command", "data": command}));
        ws.wait_for(command, PATIENCE, |m| {
            m["type"] == "command_result" && m["data"]["command"] == command
        })
    };
    let help = ask("help");
    assert_eq!(help["data"]["ok"], true);
    let status = ask("status");
    assert!(
        status["data"]["result"]["children"]
            .as_array()
            .unwrap()
            .len()
            >= 4,
        "{status}"
    );
    wait_for("series in the database", PATIENCE, || {
        let list = ask("list");
        (list["data"]["result"].as_array()?.len() >= 2).then_some(())
    });
    assert_eq!(ask("clear")["data"]["ok"], true);
    let unknown = ask("format c:");
    assert_eq!(unknown["data"]["ok"], false);
    ws.send_text("this is not json");
    let error = ws.wait_for("an error message", PATIENCE, |m| m["type"] == "error");
    assert_eq!(error["data"]["code"], "bad_message");
}

#[test]
fn delete_database_clears_the_history_and_bootstraps_again() {
    let collector = Collector::start(&simulated_config(|_| {}));
    wait_for("the bootstrap", PATIENCE, || {
        (simulated_candles(&collector, "BTCUSDT").len() >= 120).then_some(())
    });
    // A shorter bootstrap from now on: what is loaded after the delete
    // shows that the old history is gone.
    let mut config = collector.get("/config").1;
    config["bootstrap_load"] = json!(30);
    let (status, body) = collector.post("/config", &config);
    assert_eq!(status, 200, "{body}");
    assert!(simulated_candles(&collector, "BTCUSDT").len() >= 120);

    let (status, body) = collector.post("/deleteDatabase", &json!({}));
    assert_eq!(status, 200, "{body}");
    let candles = wait_for("the new bootstrap", PATIENCE, || {
        let candles = simulated_candles(&collector, "BTCUSDT");
        (candles.len() >= 30).then_some(candles)
    });
    assert!(
        candles.len() <= 32,
        "old history survived: {} candles",
        candles.len()
    );
    assert_exact_and_contiguous(SEED, &candles);
    let (_, series) = collector.get("/databaseSymbols");
    assert!(
        series
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["count"].as_u64().unwrap() <= 32),
        "{series}"
    );
}

#[test]
fn restart_rereads_the_config_file_and_refuses_a_broken_one() {
    let collector = Collector::start(&simulated_config(|_| {}));
    wait_for("the datasource to run", PATIENCE, || {
        (collector.child_status("simulated")?["state"] == "running").then_some(())
    });
    let mut config: Value = serde_json::from_slice(&file_bytes(&collector.config_path())).unwrap();
    config["exchanges"]["simulated"]["symbols"] = json!(["XRPUSDT"]);
    std::fs::write(collector.config_path(), config.to_string()).unwrap();
    let (status, body) = collector.post("/restart", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"]["reloaded"], json!(["simulated"]));
    wait_for("XRPUSDT history", PATIENCE, || {
        (simulated_candles(&collector, "XRPUSDT").len() >= 120).then_some(())
    });

    std::fs::write(collector.config_path(), "{\"exchanges\": 5}").unwrap();
    let (status, body) = collector.post("/restart", &json!({}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config");
    assert_eq!(
        collector.get("/config").1["exchanges"]["simulated"]["symbols"],
        json!(["XRPUSDT"])
    );
    assert_eq!(collector.get("/health").0, 200);
}

#[test]
fn slow_clients_do_not_slow_the_collector() {
    // A flood of updates and a client that never reads: the collector keeps
    // collecting and answering.
    let collector = Collector::start(&simulated_config(|c| {
        c["exchanges"]["simulated"]["simulation"]["updates_per_second"] = json!(2000);
    }));
    let _stuck = collector.ws();
    let before = wait_for("updates", PATIENCE, || {
        let updates = datasource_metrics(&collector.child_status("simulated")?)?.updates;
        (updates > 0).then_some(updates)
    });
    wait_for("updates to keep flowing", PATIENCE, || {
        let updates = datasource_metrics(&collector.child_status("simulated")?)?.updates;
        (updates > before + 10_000).then_some(())
    });
    assert_eq!(collector.get("/health").0, 200);
}

#[test]
fn a_locked_database_keeps_the_queue_and_loses_nothing() {
    let collector = Collector::start(&simulated_config(|c| c["batch_interval"] = json!(200)));
    wait_for("a first batch write", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.flushes >= 1).then_some(())
    });
    // Another process takes the write lock, as a backup tool or a careless
    // sqlite3 shell would.
    let locker = rusqlite::Connection::open(collector.database_path()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let storage = wait_for("failed writes to be reported", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.failed_flushes >= 2 && stats.queued > 0).then_some(stats)
    });
    assert!(
        storage
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("locked")),
        "{storage:?}"
    );
    // Reads still see every candle, queued ones included.
    assert_both_series_exact(&collector);
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    wait_for("writes to recover", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        stats.last_error.is_none().then_some(())
    });
    let (exit, stderr, dir) = collector.terminate();
    assert!(exit.success(), "{stderr}");
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let candles = stored_candles(&dir.path().join("data/ohlcv.db"), symbol);
        assert!(candles.len() >= 120);
        assert_exact_and_contiguous(SEED, &candles);
    }
}

#[test]
fn max_records_is_enforced_per_series() {
    let collector = Collector::start(&simulated_config(|c| c["batch_interval"] = json!(200)));
    wait_for("the bootstrap to be written", PATIENCE, || {
        let (_, series) = collector.get("/databaseSymbols");
        (series.as_array()?.len() == 2
            && series
                .as_array()?
                .iter()
                .all(|s| s["count"].as_u64() >= Some(120)))
        .then_some(())
    });
    let mut config = collector.get("/config").1;
    config["max_records"] = json!(50);
    config["bootstrap_load"] = json!(50);
    let (status, body) = collector.post("/config", &config);
    assert_eq!(status, 200, "{body}");
    wait_for("retention to apply", PATIENCE, || {
        let (_, series) = collector.get("/databaseSymbols");
        series
            .as_array()?
            .iter()
            .all(|s| s["count"].as_u64() == Some(50))
            .then_some(())
    });
    let candles = simulated_candles(&collector, "BTCUSDT");
    // 50 stored, plus a candle that opened since the last write, if any.
    assert!(
        (50..=51).contains(&candles.len()),
        "{} candles",
        candles.len()
    );
    assert_exact_and_contiguous(SEED, &candles);
}

#[test]
fn logs_are_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        simulated_config(|c| c["port"] = json!("eighty")).to_string(),
    )
    .unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON log line in {stderr}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["fields"]["message"].as_str().unwrap().contains("port"),
        "{line}"
    );
}

#[test]
fn a_bootstrap_longer_than_one_request_is_loaded_in_chunks() {
    // A multiple of the chunk (the default bootstrap_load is 10,000): the
    // last chunk ends at the current candle, and nothing is asked after it.
    let collector = Collector::start(&simulated_config(|c| {
        c["bootstrap_load"] = json!(20_000);
        c["exchanges"]["simulated"]["symbols"] = json!(["BTCUSDT"]);
    }));
    let series = wait_for("the whole bootstrap", PATIENCE, || {
        let (_, series) = collector.get("/databaseSymbols");
        let series = series.as_array()?.first()?.clone();
        (series["count"].as_u64()? >= 20_000).then_some(series)
    });
    let stderr = collector.stderr();
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let (first, last, count) = (
        series["first"].as_i64().unwrap(),
        series["last"].as_i64().unwrap(),
        series["count"].as_i64().unwrap(),
    );
    assert_eq!(
        last - first,
        (count - 1) * 60_000,
        "not contiguous: {series}"
    );
    assert_exact_and_contiguous(SEED, &simulated_candles(&collector, "BTCUSDT"));
}

#[test]
fn candles_the_database_refuses_at_shutdown_come_back_at_the_next_start() {
    let collector = Collector::start(&simulated_config(|c| {
        c["batch_interval"] = json!(3_600_000)
    }));
    wait_for("the history in the queue", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.queued >= 240).then_some(())
    });
    // The database stays locked through the whole shutdown.
    let locker = rusqlite::Connection::open(collector.database_path()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (exit, stderr, dir) = collector.terminate();
    assert_eq!(
        exit.code(),
        Some(3),
        "candles kept in the rescue file: {stderr}"
    );
    assert!(stderr.contains("rescue file"), "{stderr}");
    let rescue = dir.path().join("data/ohlcv.db.rescue.jsonl");
    assert!(rescue.exists());
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    // No bootstrap in the second run: whatever history it has was rescued.
    let config_path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&file_bytes(&config_path)).unwrap();
    config["bootstrap_load"] = json!(0);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let collector = Collector::start_in(dir);
    wait_for("the import to be logged", PATIENCE, || {
        collector
            .stderr()
            .contains("imported the candles a previous run could not write")
            .then_some(())
    });
    assert!(!rescue.exists(), "the rescue file is retired once imported");
    let (exit, stderr, dir) = collector.terminate();
    assert!(exit.success(), "{stderr}");
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let candles = stored_candles(&dir.path().join("data/ohlcv.db"), symbol);
        assert!(candles.len() >= 120, "{symbol}: {} candles", candles.len());
        assert_exact_and_contiguous(SEED, &candles);
    }
}

#[test]
fn candles_neither_the_database_nor_the_disk_takes_exit_with_their_own_code() {
    let collector = Collector::start(&simulated_config(|c| {
        c["batch_interval"] = json!(3_600_000)
    }));
    wait_for("the history in the queue", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.queued >= 240).then_some(())
    });
    let locker = rusqlite::Connection::open(collector.database_path()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A file-size limit of one byte: no file can grow, as on a full disk.
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", collector.pid()))
        .arg("--fsize=1:unlimited")
        .status()
        .unwrap();
    assert!(limited.success());
    let (exit, stderr, dir) = collector.terminate();
    assert_eq!(exit.code(), Some(4), "candles lost: {stderr}");
    assert!(stderr.contains("candles lost"), "{stderr}");
    let rescue = dir.path().join("data/ohlcv.db.rescue.jsonl");
    assert!(
        !rescue.exists(),
        "a rescue file that could not be written is not left behind empty"
    );
}

#[test]
fn after_a_clean_exit_the_database_file_alone_is_a_backup() {
    let collector = Collector::start(&simulated_config(|_| {}));
    wait_for("the history stored", PATIENCE, || {
        let stats = storage_stats(&collector.child_status("storage")?)?;
        (stats.rows_written >= 240).then_some(())
    });
    // A backup taken while running, as the README says.
    let backup_while_running = collector.dir.path().join("running-backup.db");
    rusqlite::Connection::open(collector.database_path())
        .unwrap()
        .execute("VACUUM INTO ?1", [backup_while_running.to_str().unwrap()])
        .unwrap();
    let (exit, stderr, dir) = collector.terminate();
    assert!(exit.success(), "{stderr}");

    let db = dir.path().join("data/ohlcv.db");
    let wal = dir.path().join("data/ohlcv.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "everything is checkpointed into the main file"
    );
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let stored = stored_candles(&db, symbol);
        let copied = stored_candles(&copy, symbol);
        assert!(copied.len() >= 120, "{symbol}: {} candles", copied.len());
        assert_eq!(copied, stored, "{symbol}");
        let backed_up = stored_candles(&backup_while_running, symbol);
        assert!(
            backed_up.len() >= 120,
            "{symbol}: {} in the backup",
            backed_up.len()
        );
        assert_exact_and_contiguous(SEED, &backed_up);
    }
}

/// What every worker's metrics carry, in `/status` and `worker_metrics`
/// alike: the seed's `cpuUser` and `heapUsed`, a timestamp, camelCase keys
/// only, and the fields of the worker's kind.
fn assert_worker_metrics(worker: &str, metrics: &Value) {
    let keys = metrics
        .as_object()
        .unwrap_or_else(|| panic!("{worker}: metrics are not an object: {metrics}"));
    assert!(
        metrics["cpuUser"]
            .as_str()
            .is_some_and(|s| s.parse::<f64>().is_ok()),
        "{worker}: {metrics}"
    );
    assert!(
        metrics["heapUsed"].as_u64().is_some_and(|bytes| bytes > 0),
        "{worker}: {metrics}"
    );
    assert!(
        metrics["timestamp"].as_i64().is_some_and(|t| t > 0),
        "{worker}: {metrics}"
    );
    let snake_case: Vec<_> = keys.keys().filter(|k| k.contains('_')).collect();
    assert!(
        snake_case.is_empty(),
        "{worker}: {snake_case:?} in {metrics}"
    );
    let decoded = match worker {
        "storage" => serde_json::from_value::<StorageMetrics>(metrics.clone()).map(drop),
        "monitor" => serde_json::from_value::<MonitorMetrics>(metrics.clone()).map(drop),
        "gateway" => serde_json::from_value::<GatewayMetrics>(metrics.clone()).map(drop),
        _ => serde_json::from_value::<DatasourceMetrics>(metrics.clone()).map(drop),
    };
    if let Err(error) = decoded {
        panic!("{worker}: {error}: {metrics}");
    }
}

#[test]
fn a_port_in_use_stops_the_process_before_it_touches_the_database() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        simulated_config(|c| c["port"] = json!(port)).to_string(),
    )
    .unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("child died"), "{stderr}");
    assert!(
        !dir.path().join("data/ohlcv.db").exists(),
        "no database created: {stderr}"
    );
}

#[test]
fn a_usage_error_exits_with_clap_code_only() {
    let output = std::process::Command::new(common::binary())
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_worker_reports_cpu_and_memory_in_camel_case() {
    let collector = Collector::start(&simulated_config(|_| {}));
    let workers = ["storage", "monitor", "gateway", "simulated"];
    let children = wait_for("a heartbeat from every child", PATIENCE, || {
        let (_, status) = collector.get("/status");
        let children = status["children"].as_array()?.clone();
        children
            .iter()
            .all(|c| c["last_heartbeat"].is_i64())
            .then_some(children)
    });
    let names: Vec<_> = children.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, workers);
    for child in &children {
        assert_worker_metrics(child["name"].as_str().unwrap(), &child["metrics"]);
    }

    let mut ws = collector.ws();
    let message = ws.wait_for("worker_metrics of every worker", PATIENCE, |m| {
        m["type"] == "worker_metrics" && workers.iter().all(|w| m["data"][w].is_object())
    });
    let data = message["data"].as_object().unwrap();
    assert_eq!(data.len(), workers.len(), "{message}");
    for (worker, metrics) in data {
        assert_worker_metrics(worker, metrics);
    }
}

#[test]
fn a_sigterm_right_after_the_address_is_printed_shuts_down_in_order() {
    for _ in 0..3 {
        let collector = Collector::start(&simulated_config(|_| {}));
        let (exit, stderr, _dir) = collector.terminate();
        assert_eq!(exit.code(), Some(0), "{stderr}");
    }
}
