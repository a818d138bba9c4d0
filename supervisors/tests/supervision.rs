//! The supervisor in-process, with a short restart policy: a child that
//! keeps dying is marked failed, reported, and retried on the slow
//! schedule, while the rest of the process carries on.

use std::time::{Duration, Instant};

use ohlcv_actors::control::{Control, StatusReport};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::LogHistory;
use ohlcv_actors::lifecycle::install_panic_capture;
use ohlcv_domain::config::ConfigStore;
use ohlcv_storage::Database;
use ohlcv_supervisors::policy::RestartPolicy;
use ohlcv_supervisors::{Shutdown, Supervisor, SupervisorControl, SupervisorSetup};

/// Polls the supervisor's status until `pred` holds, or fails after 30 s.
async fn status_until(
    control: &SupervisorControl,
    what: &str,
    pred: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let status = control.status().await.expect("status");
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
    }
}

fn child<'a>(
    status: &'a StatusReport,
    name: &str,
) -> Option<&'a ohlcv_actors::control::ChildStatus> {
    status.children.iter().find(|c| c.name == name)
}

#[actix_rt::test]
async fn a_child_that_keeps_dying_is_marked_failed_and_retried_on_the_slow_schedule() {
    install_panic_capture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 200,
                           "faults": {"panic_after_updates": 5, "repeat": true}}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let store = ConfigStore::new(&path);
    let config = store.load().unwrap();
    let database = Database::open(&config.resolved_database_path(&store.dir())).unwrap();
    let (fatal, _fatal) = tokio::sync::oneshot::channel();
    let policy = RestartPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(300),
        intensity: 3,
        period: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
    };
    let (supervisor, control) = Supervisor::new(SupervisorSetup {
        store,
        config,
        database,
        broadcaster: Broadcaster::new(),
        logs: LogHistory::default(),
        fatal,
    })
    .with_policy(policy)
    .start_with_control();

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
        supervisor.send(Shutdown).await.unwrap(),
        "queued candles saved"
    );
}
