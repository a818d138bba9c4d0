//! The gateway: HTTP API and WebSocket for UI clients.
//!
//! - [`bind_server`] / [`serve_listener`] build the actix-web server ([`http`] routes,
//!   [`ws`] sessions) over the shared [`GatewayDeps`];
//! - [`Gateway`] is the supervised actor around it: it drives the server,
//!   reports an unexpected end of the server as an early stop, sends
//!   heartbeats, and stops the server gracefully on [`StopGateway`];
//! - [`assets`] serves the dashboard at `/` and the browser client at
//!   `/client.js`, embedded in the binary;
//! - [`broadcast`] fans server messages out to the clients whose
//!   [`topics`] match, into each client's bounded [`outbox`], encoded once
//!   per [`encoding`] ([`shared`]); [`requests`] serves the HTTP API's
//!   methods over the WebSocket; [`logs`] forwards the process's log
//!   lines, [`protocol`] defines the messages, [`errors`] the HTTP error
//!   shape.
//!
//! The server itself runs on its own actix-web worker threads; the actor
//! only owns its lifetime, on an arbiter of its own (so that the monitor
//! sees its heartbeats stop if it stalls, and the supervisor can replace
//! it). The supervisor owns shutdown, so the server
//! installs no signal handlers.

pub mod assets;
pub mod broadcast;
pub mod encoding;
pub mod errors;
pub mod http;
pub mod logs;
pub mod outbox;
pub mod protocol;
pub mod requests;
pub mod shared;
pub mod topics;
pub mod ws;

#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer};
use tokio::sync::watch;

use self::broadcast::Broadcaster;
use self::logs::LogHistory;
use self::ws::SessionClosing;
use crate::control::Control;
use crate::lifecycle::{
    stat_cpu_seconds_named, ChildId, CpuMeter, Heartbeat, HeartbeatSink, LifeGuard,
};
use crate::metrics::{CommonMetrics, GatewayMetrics, WorkerMetrics};
use crate::storage::StorageHandle;
use crate::HEARTBEAT_INTERVAL;

/// How long a graceful stop waits for requests in flight before the
/// workers are stopped anyway. WebSocket sessions are told to close first,
/// so this only bounds slow HTTP requests; 5 s stays well inside the 10 s
/// a process manager usually allows between SIGTERM and SIGKILL.
pub const SHUTDOWN_TIMEOUT_S: u64 = 5;

/// What the routes and sessions need: the supervisor to command, the
/// storage thread to read, and the live message streams. Cheap to clone.
#[derive(Clone)]
pub struct GatewayDeps {
    /// The supervisor, for every command.
    pub control: Arc<dyn Control>,
    /// The storage thread, for `/ohlcv`, `/databaseSymbols` and `list`.
    pub storage: StorageHandle,
    /// Server messages for WebSocket clients.
    pub broadcaster: Broadcaster,
    /// Recent log lines, sent to each client on connect.
    pub logs: LogHistory,
}

/// A bound HTTP server, not yet started, with what its [`Gateway`] needs
/// to run and stop it.
pub struct BoundServer {
    server: Server,
    addr: SocketAddr,
    /// Tells WebSocket sessions to close: actix-web gives handlers no
    /// signal when a graceful stop begins, and without one every open
    /// WebSocket would hold a stop for the full [`SHUTDOWN_TIMEOUT_S`].
    close_sessions: watch::Sender<bool>,
}

impl BoundServer {
    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Builds the HTTP server on `addr` (port 0 picks a free port) with
/// `workers` worker threads (at least one), and binds it. The server runs
/// once a [`Gateway`] drives it.
///
/// # Errors
/// The OS error if the address cannot be bound (in use, not permitted).
pub fn bind_server(
    deps: GatewayDeps,
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<BoundServer> {
    serve_listener(deps, &std::net::TcpListener::bind(addr)?, workers)
}

/// Builds the HTTP server on a listener bound beforehand, serving a
/// duplicate of it: the caller keeps `listener` open, so the port stays
/// held across a restart of the gateway (nobody else can take it, and
/// connections made meanwhile wait in the backlog).
///
/// # Errors
/// The OS error if the listener cannot be duplicated or used.
pub fn serve_listener(
    deps: GatewayDeps,
    listener: &std::net::TcpListener,
    workers: usize,
) -> std::io::Result<BoundServer> {
    let (close_sessions, closing) = watch::channel(false);
    let closing = SessionClosing(closing);
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let deps = deps.clone();
        let closing = closing.clone();
        App::new().configure(move |cfg| http::configure(cfg, deps, closing))
    })
    .disable_signals()
    .workers(workers.max(1))
    .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
    .listen(listener.try_clone()?)?;
    Ok(BoundServer {
        server: server.run(),
        addr: bound,
        close_sessions,
    })
}

/// The supervised actor around the HTTP server.
pub struct Gateway {
    server: Option<Server>,
    handle: ServerHandle,
    addr: SocketAddr,
    broadcaster: Broadcaster,
    heartbeats: HeartbeatSink,
    guard: LifeGuard,
    close_sessions: watch::Sender<bool>,
    /// Set once asked to stop: the server ending is then expected.
    stopping: bool,
    cpu: CpuMeter,
}

impl Gateway {
    /// An actor that will run `bound` (from [`bind_server`]) once started.
    pub fn new(
        bound: BoundServer,
        broadcaster: Broadcaster,
        heartbeats: HeartbeatSink,
        guard: LifeGuard,
    ) -> Self {
        Gateway {
            handle: bound.server.handle(),
            server: Some(bound.server),
            addr: bound.addr,
            broadcaster,
            heartbeats,
            guard,
            close_sessions: bound.close_sessions,
            stopping: false,
            cpu: CpuMeter::default(),
        }
    }

    fn heartbeat(&mut self) {
        let metrics = GatewayMetrics {
            common: CommonMetrics::now(self.cpu.sample_from(server_cpu_seconds())),
            clients: self.broadcaster.clients(),
            published: self.broadcaster.published(),
            address: self.addr.to_string(),
        };
        self.heartbeats.send(Heartbeat {
            child: ChildId::Gateway,
            generation: self.guard.generation(),
            metrics: WorkerMetrics::Gateway(metrics),
        });
    }

    fn close_sessions(&self) {
        self.close_sessions.send_replace(true);
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(server) = self.server.take() {
            ctx.spawn(server.into_actor(self).map(|result, act, ctx| {
                if act.stopping {
                    return;
                }
                match result {
                    Ok(()) => {
                        tracing::error!(address = %act.addr, "http server stopped unexpectedly")
                    }
                    Err(error) => {
                        tracing::error!(address = %act.addr, %error, "http server failed")
                    }
                }
                ctx.stop();
            }));
        }
        tracing::info!(address = %self.addr, success = true, "gateway listening");
        self.heartbeat();
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, _| act.heartbeat());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // However the actor ends (stop, panic), its clients are told and
        // its server does not outlive it holding the port. Stopping is
        // idempotent: after a graceful stop these are no-ops.
        self.close_sessions();
        drop(self.handle.stop(false));
    }
}

/// Blocks the gateway actor's thread for the given time, as a bug would.
/// For tests of stall handling only: no route or command of the API
/// reaches it. (The HTTP workers run on threads of their own and keep
/// answering.)
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FreezeGateway(pub std::time::Duration);

impl Handler<FreezeGateway> for Gateway {
    type Result = ();

    fn handle(&mut self, msg: FreezeGateway, _: &mut Self::Context) {
        tracing::warn!(ms = msg.0.as_millis() as u64, "gateway frozen on request");
        std::thread::sleep(msg.0);
    }
}

/// Asks the gateway to stop: WebSocket clients get a Close frame, requests
/// in flight finish (up to [`SHUTDOWN_TIMEOUT_S`]), the port is released,
/// then the actor stops. Answered once all that is done.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopGateway;

impl Handler<StopGateway> for Gateway {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopGateway, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        self.close_sessions();
        let handle = self.handle.clone();
        Box::pin(
            async move { handle.stop(true).await }
                .into_actor(self)
                .map(|(), act, ctx| {
                    tracing::info!(address = %act.addr, "gateway stopped");
                    ctx.stop();
                }),
        )
    }
}

/// CPU seconds (user + system) of the process's `actix-server …` threads,
/// where all the gateway's work happens (Linux only; with several servers in
/// one process, as in tests, it counts them all).
fn server_cpu_seconds() -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        if let Some((name, seconds)) = stat_cpu_seconds_named(&stat) {
            if name.starts_with("actix-server") {
                total += seconds;
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests;
