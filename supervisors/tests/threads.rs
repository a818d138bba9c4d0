//! Thread accounting needs a process of its own: `/proc/self/task` counts
//! every thread of the test binary, so this file holds one test only.

use std::time::{Duration, Instant};

use ohlcv_actors::control::Control;
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::LogHistory;
use ohlcv_actors::lifecycle::install_panic_capture;
use ohlcv_domain::config::ConfigStore;
use ohlcv_storage::Database;
use ohlcv_supervisors::policy::RestartPolicy;
use ohlcv_supervisors::{Shutdown, Supervisor, SupervisorSetup};

#[actix_rt::test]
async fn a_datasource_that_keeps_dying_leaves_no_thread_behind() {
    install_panic_capture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 200,
                           "faults": {"panic_after_updates": 20, "repeat": true}}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let store = ConfigStore::new(&path);
    let config = store.load().unwrap();
    let database = Database::open(&config.resolved_database_path(&store.dir())).unwrap();
    // Restarts without end: every death must be followed by a restart.
    let policy = RestartPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        intensity: 1_000,
        period: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
    };
    let (supervisor, control) = Supervisor::new(SupervisorSetup {
        store,
        config,
        database,
        broadcaster: Broadcaster::new(),
        logs: LogHistory::default(),
        listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    })
    .with_policy(policy)
    .start_with_control();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut baseline = None;
    loop {
        let status = control.status().await.unwrap();
        let simulated = status.children.iter().find(|c| c.name == "simulated");
        let restarts = simulated.map_or(0, |c| c.restarts);
        let running = simulated.is_some_and(|c| c.state == "running");
        let threads = status.threads.expect("Linux reports threads");
        if running && restarts == 1 && baseline.is_none() {
            baseline = Some(threads);
        }
        if let Some(baseline) = baseline {
            // Each of the deaths since would have left an arbiter thread.
            if running && restarts >= 8 && threads <= baseline + 1 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "threads {threads} after {restarts} restarts, {baseline:?} after the first: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    supervisor.send(Shutdown).await.unwrap();
}
