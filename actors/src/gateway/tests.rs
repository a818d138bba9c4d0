//! Gateway actor tests: heartbeats, an unexpected end of the server, and
//! binding.

use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::*;
use crate::gateway::test_support::{eventually, harness, recorder, within};
use crate::lifecycle::{ExitReason, HeartbeatSink};

#[actix_web::test]
async fn the_gateway_reports_heartbeats_and_serves_http() {
    let h = harness();
    let server = bind_server(h.deps.clone(), "127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let addr = server.addr();
    assert_ne!(addr.port(), 0, "port 0 resolves to the bound port");
    let (monitor, heartbeats) = recorder::<Heartbeat>();
    let sink = HeartbeatSink::default();
    sink.set(monitor.recipient());
    let gateway = Gateway::new(
        server,
        h.deps.broadcaster.clone(),
        sink,
        LifeGuard::new(ChildId::Gateway, 7, h.exit_sink.clone()),
    )
    .start();

    let beat = eventually("a heartbeat", || {
        heartbeats.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(beat.child, ChildId::Gateway);
    assert_eq!(beat.generation, 7);
    let WorkerMetrics::Gateway(metrics) = &beat.metrics else {
        panic!("not the gateway's metrics: {beat:?}");
    };
    assert_eq!(metrics.clients, 0);
    assert_eq!(metrics.published, 0);
    assert_eq!(metrics.address, addr.to_string());
    assert!(metrics.common.cpu_user.parse::<f64>().is_ok(), "{beat:?}");
    assert!(metrics.common.timestamp > 0);
    if cfg!(target_os = "linux") {
        assert!(metrics.common.heap_used > 0, "{beat:?}");
    }

    let mut response = within(
        "GET /health",
        awc::Client::new()
            .get(format!("http://{addr}/health"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = within("the body", response.json()).await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));

    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
    // A second address on the same port binds again once stopped.
    let again = bind_server(h.deps.clone(), addr, 1).unwrap();
    drop(again);
}

#[actix_web::test]
async fn a_server_that_ends_unasked_stops_the_actor_as_an_early_stop() {
    let h = harness();
    let server = bind_server(h.deps.clone(), "127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let addr = server.addr();
    let handle = server.server.handle();
    let gateway = Gateway::new(
        server,
        h.deps.broadcaster.clone(),
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Gateway, 3, h.exit_sink.clone()),
    )
    .start();
    // Wait until the server runs, then end it behind the actor's back.
    within("GET /health", async {
        loop {
            if awc::Client::new()
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within("the server to stop", handle.stop(true)).await;

    let exit = eventually("the exit report", || {
        let exits = h.exits.lock().unwrap();
        exits
            .iter()
            .find(|e| e.child == ChildId::Gateway)
            .map(|e| (e.generation, e.reason.clone()))
    })
    .await;
    assert_eq!(exit, (3, ExitReason::Stopped));
    eventually("the actor to stop", || (!gateway.connected()).then_some(())).await;
}

#[actix_web::test]
async fn binding_a_taken_port_fails_with_the_os_error() {
    let h = harness();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = bind_server(h.deps.clone(), addr, 1)
        .err()
        .expect("the port is taken");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
}

#[actix_web::test]
async fn the_cpu_time_counts_the_servers_own_workers() {
    let h = harness();
    let server = bind_server(h.deps.clone(), "127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let threads = server.threads.clone();
    let addr = server.addr();
    let gateway = Gateway::new(
        server,
        h.deps.broadcaster.clone(),
        HeartbeatSink::default(),
        LifeGuard::new(ChildId::Gateway, 1, h.exit_sink.clone()),
    )
    .start();
    // Inside an actix System the workers are plain arbiters: they are
    // known by the ids recorded as they started.
    eventually("both workers to start", || {
        (threads.0.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let before = threads.cpu_seconds().expect("Linux");
    let client = awc::Client::new();
    for _ in 0..200 {
        let mut response = client
            .get(format!("http://{addr}/databaseSymbols"))
            .send()
            .await
            .unwrap();
        response.body().await.unwrap();
    }
    let after = eventually("the workers' CPU time to grow", || {
        let now = threads.cpu_seconds()?;
        (now > before).then_some(now)
    })
    .await;
    assert!(after > before);
    within("the gateway to stop", gateway.send(StopGateway))
        .await
        .unwrap();
}
