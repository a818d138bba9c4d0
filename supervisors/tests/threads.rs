//! Thread accounting needs a process of its own: `/proc/self/task` counts
//! every thread of the test binary, so the tests of this file run one at a
//! time (a lock) and nothing else runs in this binary.

mod common;

use std::time::{Duration, Instant};

use common::{freeze, start};
use ohlcv_actors::control::Control;
use ohlcv_actors::lifecycle::ChildId;
use ohlcv_supervisors::policy::RestartPolicy;
use ohlcv_supervisors::Shutdown;

/// Held by each test for its whole run: thread counts of one test must not
/// see the threads of another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[actix_rt::test]
async fn a_datasource_that_keeps_dying_leaves_no_thread_behind() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 200,
                           "faults": {"panic_after_updates": 20, "repeat": true}}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    // Restarts without end: every death must be followed by a restart.
    let policy = RestartPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        intensity: 1_000,
        period: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
    };
    let (supervisor, control, _dir) = start(config, policy);

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

#[actix_rt::test]
async fn a_replaced_gateway_takes_its_server_threads_with_it_once_it_wakes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let config = serde_json::json!({
        "exchanges": {"simulated": {"enabled": true, "symbols": ["BTCUSDT"],
            "simulation": {"updates_per_second": 20}}},
        "intervals": ["1m"], "bootstrap_load": 10, "batch_interval": 100, "port": 0
    });
    let (supervisor, control, _dir) = start(config, RestartPolicy::default());

    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let status = control.status().await.unwrap();
        if status
            .children
            .iter()
            .all(|c| c.state == "running" && c.metrics.is_some())
        {
            break status.threads.expect("Linux reports threads");
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    freeze(&supervisor, ChildId::Gateway, Duration::from_secs(12)).await;
    loop {
        let status = control.status().await.unwrap();
        let gateway = status
            .children
            .iter()
            .find(|c| c.name == "gateway")
            .unwrap();
        let threads = status.threads.unwrap();
        // Replaced, the frozen incarnation ended, and its server with it.
        if gateway.restarts == 1
            && gateway.state == "running"
            && status.abandoned_threads == 0
            && threads <= before + 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "threads {threads}, {before} before the stall: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    supervisor.send(Shutdown).await.unwrap();
}
