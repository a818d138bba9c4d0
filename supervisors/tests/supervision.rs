//! The supervisor in-process, with a short restart policy: a child that
//! keeps dying is marked failed, reported, and retried on the slow
//! schedule, while the rest of the process carries on; dead children leave
//! no thread behind, and stalled ones are replaced, counted and bounded.

mod common;

use std::time::Duration;

use common::{child, freeze, quick_policy, start, status_until};
use ohlcv_actors::control::{Control, ControlError};
use ohlcv_actors::lifecycle::ChildId;
use ohlcv_actors::metrics::WorkerMetrics;
use ohlcv_actors::storage::FlushOutcome;
use ohlcv_domain::config::ConfigStore;
use ohlcv_domain::ExchangeId;
use ohlcv_storage::Database;
use ohlcv_supervisors::policy::RestartPolicy;
use ohlcv_supervisors::{Shutdown, MAX_ABANDONED_PER_CHILD};

#[actix_rt::test]
async fn a_child_that_keeps_dying_is_marked_failed_and_retried_on_the_slow_schedule() {
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 200,
                           "faults": {"panic_after_updates": 5, "repeat": true}}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    let (supervisor, control, _dir) = start(config, quick_policy());

    let failed = status_until(&control, "the datasource to be marked failed", |s| {
        child(s, "simulated").is_some_and(|c| c.state == "failed")
    })
    .await;
    let simulated = child(&failed, "simulated").unwrap();
    assert_eq!(
        simulated.restarts, 4,
        "three restarts allowed, the fourth death gives up"
    );
    assert!(
        simulated
            .last_error
            .as_deref()
            .unwrap()
            .contains("simulated fault"),
        "{simulated:?}"
    );
    for other in ["storage", "monitor", "gateway"] {
        assert_eq!(
            child(&failed, other).unwrap().state,
            "running",
            "{other} must be untouched"
        );
    }

    // The slow schedule tries again (and, the fault repeating, fails again).
    status_until(&control, "a retry on the slow schedule", |s| {
        child(s, "simulated").is_some_and(|c| c.restarts > 4)
    })
    .await;

    assert!(
        matches!(
            supervisor.send(Shutdown).await.unwrap(),
            FlushOutcome::Saved { .. }
        ),
        "queued candles saved"
    );
}

/// A config with the simulated exchange and no faults.
fn quiet_config(batch_interval: u64) -> serde_json::Value {
    serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT", "ETHUSDT"],
            "simulation": {"updates_per_second": 50}},
            // Disabled, on a closed loopback port: never the real exchange.
            "binance_futures": {"enabled": false, "symbols": [],
                "rest_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1"}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": batch_interval, "port": 0
    })
}

#[actix_rt::test]
async fn a_stalled_monitor_is_replaced_and_its_thread_counted_until_it_ends() {
    let (supervisor, control, _dir) = start(quiet_config(100), quick_policy());
    status_until(&control, "the monitor to run", |s| {
        child(s, "monitor").is_some_and(|c| c.state == "running")
    })
    .await;
    freeze(&supervisor, ChildId::Monitor, Duration::from_secs(14)).await;

    let replaced = status_until(&control, "the stalled monitor to be replaced", |s| {
        child(s, "monitor").is_some_and(|c| c.restarts == 1 && c.state == "running")
    })
    .await;
    let monitor = child(&replaced, "monitor").unwrap();
    assert!(
        monitor
            .last_error
            .as_deref()
            .unwrap()
            .contains("heartbeats"),
        "{monitor:?}"
    );
    assert_eq!(monitor.abandoned_threads, 1, "{replaced:?}");
    assert_eq!(replaced.abandoned_threads, 1);
    // The new monitor watches again: its own record moves on.
    status_until(&control, "the new monitor's heartbeat", |s| {
        child(s, "monitor").is_some_and(|c| c.last_heartbeat.is_some())
    })
    .await;
    // Once the frozen thread wakes, it ends and is no longer counted.
    status_until(&control, "the frozen monitor thread to end", |s| {
        s.abandoned_threads == 0
    })
    .await;
    assert!(matches!(
        supervisor.send(Shutdown).await.unwrap(),
        FlushOutcome::Saved { .. }
    ));
}

#[actix_rt::test]
async fn a_stalled_storage_thread_is_replaced_on_the_same_queue() {
    let (supervisor, control, dir) = start(quiet_config(100), quick_policy());
    status_until(&control, "storage to run", |s| {
        child(s, "storage").is_some_and(|c| c.state == "running")
    })
    .await;
    freeze(&supervisor, ChildId::Storage, Duration::from_secs(14)).await;
    let replaced = status_until(&control, "the stalled storage thread to be replaced", |s| {
        child(s, "storage").is_some_and(|c| c.restarts == 1 && c.state == "running")
    })
    .await;
    assert_eq!(child(&replaced, "storage").unwrap().abandoned_threads, 1);

    // The replacement writes while the old thread is still frozen.
    let db_path = dir.path().join("data/ohlcv.db");
    let stored = || {
        Database::open(&db_path)
            .and_then(|db| db.series())
            .map(|series| series.iter().map(|s| s.count).sum::<u64>())
            .unwrap_or(0)
    };
    let before = stored();
    status_until(&control, "the new storage thread to write", |s| {
        child(s, "storage").is_some_and(|c| c.abandoned_threads == 1) && stored() > before
    })
    .await;
    status_until(&control, "the frozen storage thread to end", |s| {
        s.abandoned_threads == 0
    })
    .await;
    assert!(matches!(
        supervisor.send(Shutdown).await.unwrap(),
        FlushOutcome::Saved { .. }
    ));
}

#[actix_rt::test]
async fn a_child_whose_stalled_threads_reach_the_bound_is_not_started_again() {
    let (supervisor, control, _dir) = start(quiet_config(100), quick_policy());
    for stall in 1..=MAX_ABANDONED_PER_CHILD as u32 {
        status_until(&control, "the monitor to run", |s| {
            child(s, "monitor").is_some_and(|c| c.state == "running" && c.restarts == stall - 1)
        })
        .await;
        freeze(&supervisor, ChildId::Monitor, Duration::from_secs(60)).await;
    }
    let refused = status_until(&control, "the monitor to be refused a new thread", |s| {
        child(s, "monitor").is_some_and(|c| {
            c.state != "running"
                && c.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("still stalled"))
        })
    })
    .await;
    assert_eq!(refused.abandoned_threads, MAX_ABANDONED_PER_CHILD);
    assert!(matches!(
        supervisor.send(Shutdown).await.unwrap(),
        FlushOutcome::Saved { .. }
    ));
}

#[actix_rt::test]
async fn a_shutdown_with_a_stuck_storage_thread_rescues_the_queue_within_the_budget() {
    // Batches an hour apart: every candle is still queued at the shutdown.
    let (supervisor, control, dir) = start(quiet_config(3_600_000), quick_policy());
    status_until(&control, "candles to be queued", |s| {
        child(s, "storage").is_some_and(
            |c| matches!(&c.metrics, Some(WorkerMetrics::Storage(m)) if m.stats.queued > 0),
        )
    })
    .await;
    freeze(&supervisor, ChildId::Storage, Duration::from_secs(60)).await;
    let outcome = supervisor.send(Shutdown).await.unwrap();
    let FlushOutcome::Rescued { candles } = outcome else {
        panic!("expected the queue in the rescue file, got {outcome:?}");
    };
    assert!(candles > 0);
    let rescue = ohlcv_storage::rescue::path_for(&dir.path().join("data/ohlcv.db"));
    let lines = std::fs::read_to_string(&rescue).unwrap().lines().count();
    assert!(lines >= candles, "{lines} lines for {candles} candles");
}

#[actix_rt::test]
async fn pending_restart_compares_with_what_runs_not_with_the_last_save() {
    let (supervisor, control, _dir) = start(quiet_config(100), quick_policy());
    let running = control.config().await.unwrap();
    let mut elsewhere = running.clone();
    elsewhere.port = 1;
    let report = control.replace_config(elsewhere).await.unwrap();
    assert_eq!(report.pending_restart, vec!["port"]);
    // The gateway's keys wait for the gateway's next start.
    let mut gateway = running.clone();
    gateway.allowed_origins = vec!["http://localhost:5173".into()];
    gateway.rate_limit = 7;
    let report = control.replace_config(gateway).await.unwrap();
    assert_eq!(
        report.pending_restart,
        vec!["allowed_origins", "rate_limit"]
    );
    // Back to the port the process listens on: nothing left pending.
    let report = control.replace_config(running).await.unwrap();
    assert!(report.pending_restart.is_empty(), "{report:?}");
    supervisor.send(Shutdown).await.unwrap();
}

/// Asserts that `result` is the registry's refusal of enabling
/// binance_futures, as the gateway shows it (`invalid_config`, 400).
#[actix_rt::test]
async fn enabling_a_real_exchange_builds_its_adapter_from_the_registry_and_runs_it() {
    let (supervisor, control, _dir) = start(quiet_config(100), quick_policy());
    let mut binance = control.config().await.unwrap();
    let entry = binance
        .exchanges
        .entry(ExchangeId::BinanceFutures)
        .or_default();
    entry.enabled = true;
    entry.symbols = vec![ohlcv_domain::Symbol::new("BTCUSDT").unwrap()];
    // Nothing listens on port 1: the datasource runs and keeps retrying.
    entry.rest_url = Some("http://127.0.0.1:1".into());
    entry.ws_url = Some("ws://127.0.0.1:1".into());
    control.replace_config(binance).await.unwrap();
    let status = status_until(&control, "the binance datasource to run", |s| {
        child(s, "binance_futures").is_some_and(|c| c.state == "running")
    })
    .await;
    assert!(child(&status, "simulated").is_some(), "{status:?}");
    supervisor.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
async fn a_shutdown_while_storage_waits_for_its_restart_starts_it_and_saves_everything() {
    // Restarts a minute apart: storage is still `restarting` at the shutdown.
    let policy = RestartPolicy {
        initial_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(60),
        ..quick_policy()
    };
    let (supervisor, control, dir) = start(quiet_config(3_600_000), policy);
    status_until(&control, "candles to be queued", |s| {
        child(s, "storage").is_some_and(
            |c| matches!(&c.metrics, Some(WorkerMetrics::Storage(m)) if m.stats.queued > 0),
        )
    })
    .await;
    freeze(&supervisor, ChildId::Storage, Duration::from_secs(12)).await;
    status_until(&control, "storage to wait for its restart", |s| {
        child(s, "storage").is_some_and(|c| c.state == "restarting")
    })
    .await;
    let outcome = supervisor.send(Shutdown).await.unwrap();
    assert!(
        matches!(outcome, FlushOutcome::Saved { rows } if rows > 0),
        "{outcome:?}"
    );
    let db = Database::open(&dir.path().join("data/ohlcv.db")).unwrap();
    assert!(!db.series().unwrap().is_empty());
}

#[actix_rt::test]
async fn a_datasource_that_cannot_stop_in_time_is_counted_until_its_thread_ends() {
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 200,
                           "faults": {"block_after_updates": 20, "block_ms": 12000}}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    let (supervisor, control, _dir) = start(config, quick_policy());
    // Blocked: running, but silent for longer than a heartbeat interval.
    status_until(&control, "the datasource to block", |s| {
        child(s, "simulated").is_some_and(|c| {
            c.state == "running"
                && c.last_heartbeat
                    .is_some_and(|at| ohlcv_domain::time::now_ms() - at > 4_000)
        })
    })
    .await;
    // Disabling the exchange asks the (blocked) datasource to stop; it
    // cannot answer, and its thread is abandoned after the stop timeout.
    control
        .toggle_exchange(ohlcv_domain::ExchangeId::Simulated, Some(false))
        .await
        .unwrap();
    let stopped = control.status().await.unwrap();
    let simulated = child(&stopped, "simulated").unwrap();
    assert_eq!(simulated.state, "stopped");
    assert_eq!(simulated.abandoned_threads, 1, "{stopped:?}");
    status_until(&control, "the blocked thread to end", |s| {
        s.abandoned_threads == 0
    })
    .await;
    supervisor.send(Shutdown).await.unwrap();
}

/// Whether the HTTP server at `addr` answers `GET /health`.
fn health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[actix_rt::test]
async fn a_stalled_gateway_is_replaced_while_the_port_keeps_answering() {
    let (supervisor, control, _dir) = start(quiet_config(100), quick_policy());
    let running = status_until(&control, "the gateway's first heartbeat", |s| {
        child(s, "gateway").is_some_and(|c| c.metrics.is_some())
    })
    .await;
    let Some(WorkerMetrics::Gateway(metrics)) = &child(&running, "gateway").unwrap().metrics else {
        panic!("no gateway metrics: {running:?}");
    };
    let addr = metrics.address.clone();
    assert!(health(&addr));
    freeze(&supervisor, ChildId::Gateway, Duration::from_secs(14)).await;
    let replaced = status_until(&control, "the stalled gateway to be replaced", |s| {
        child(s, "gateway").is_some_and(|c| c.restarts == 1 && c.state == "running")
    })
    .await;
    assert_eq!(child(&replaced, "gateway").unwrap().abandoned_threads, 1);
    // Both while the old actor is frozen and after, the port answers.
    let addr_for_check = addr.clone();
    assert!(tokio::task::spawn_blocking(move || health(&addr_for_check))
        .await
        .unwrap());
    status_until(&control, "the frozen gateway thread to end", |s| {
        s.abandoned_threads == 0
    })
    .await;
    assert!(tokio::task::spawn_blocking(move || health(&addr))
        .await
        .unwrap());
    assert!(matches!(
        supervisor.send(Shutdown).await.unwrap(),
        FlushOutcome::Saved { .. }
    ));
}

#[actix_rt::test]
async fn symbols_the_exchange_does_not_list_are_refused_and_nothing_is_saved() {
    let (supervisor, control, dir) = start(quiet_config(100), quick_policy());
    let path = dir.path().join("config.json");
    let before = std::fs::read(&path).unwrap();
    let running = control.config().await.unwrap();
    let symbol = |name: &str| ohlcv_domain::Symbol::new(name).unwrap();

    // FOOUSDT and BARUSDT are not in the simulated exchange's listing.
    let refused = control
        .set_symbols(
            ExchangeId::Simulated,
            vec![symbol("BTCUSDT"), symbol("FOOUSDT"), symbol("BARUSDT")],
        )
        .await;
    match refused {
        Err(ControlError::Invalid { code, message }) => {
            assert_eq!(code, "unknown_symbol");
            assert_eq!(
                message,
                "symbols[1]: FOOUSDT is not listed by simulated; \
                 symbols[2]: BARUSDT is not listed by simulated"
            );
        }
        other => panic!("expected unknown_symbol, got {other:?}"),
    }
    // An exchange that cannot be reached: the listing cannot be fetched,
    // and nothing is saved.
    match control
        .set_symbols(ExchangeId::BinanceFutures, vec![symbol("BTCUSDT")])
        .await
    {
        Err(ControlError::Exchange(message)) => {
            assert!(
                message.starts_with(
                    "the symbols binance_futures lists could not be fetched, so none were saved"
                ),
                "{message}"
            );
        }
        other => panic!("expected an exchange error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing saved");
    assert_eq!(control.config().await.unwrap(), running, "nothing applied");

    // Listed symbols are saved and applied.
    let entry = control
        .set_symbols(
            ExchangeId::Simulated,
            vec![symbol("SOLUSDT"), symbol("BTCUSDT")],
        )
        .await
        .unwrap();
    assert_eq!(entry.symbols, vec![symbol("SOLUSDT"), symbol("BTCUSDT")]);
    let saved = ConfigStore::new(&path).load().unwrap();
    assert_eq!(
        saved.exchanges[&ExchangeId::Simulated].symbols,
        entry.symbols
    );
    supervisor.send(Shutdown).await.unwrap();
}
