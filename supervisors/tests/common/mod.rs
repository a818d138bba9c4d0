//! What the supervisor's in-process tests share: a supervisor started on a
//! config in a temp dir, a short restart policy, polling its status, and
//! freezing a child.

#![allow(dead_code)] // each test binary uses its own part

use std::time::{Duration, Instant};

use actix::Addr;
use ohlcv_actors::control::{ChildStatus, Control, StatusReport};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::LogHistory;
use ohlcv_actors::lifecycle::{install_panic_capture, ChildId};
use ohlcv_domain::config::ConfigStore;
use ohlcv_storage::Database;
use ohlcv_supervisors::policy::RestartPolicy;
use ohlcv_supervisors::{FreezeChild, Supervisor, SupervisorControl, SupervisorSetup};

/// Polls the supervisor's status until `pred` holds, or fails after 30 s.
pub async fn status_until(
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

/// The entry of child `name` in `status`.
pub fn child<'a>(status: &'a StatusReport, name: &str) -> Option<&'a ChildStatus> {
    status.children.iter().find(|c| c.name == name)
}

/// A short restart policy, so tests see several restarts in seconds.
pub fn quick_policy() -> RestartPolicy {
    RestartPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(300),
        intensity: 3,
        period: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
    }
}

/// Starts a supervisor on `config` (a config file's JSON) in a temp dir.
pub fn start(
    config: serde_json::Value,
    policy: RestartPolicy,
) -> (Addr<Supervisor>, SupervisorControl, tempfile::TempDir) {
    install_panic_capture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let store = ConfigStore::new(&path);
    let config = store.load().unwrap();
    let database = Database::open(&config.resolved_database_path(&store.dir())).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (supervisor, control) = Supervisor::new(SupervisorSetup {
        store,
        config,
        database,
        broadcaster: Broadcaster::new(),
        logs: LogHistory::default(),
        listener,
    })
    .with_policy(policy)
    .start_with_control();
    (supervisor, control, dir)
}

/// Blocks `child`'s thread for `duration` (see [`FreezeChild`]).
pub async fn freeze(supervisor: &Addr<Supervisor>, child: ChildId, duration: Duration) {
    supervisor
        .send(FreezeChild { child, duration })
        .await
        .expect("the supervisor runs");
}
