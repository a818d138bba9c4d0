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
//!   lines, [`protocol`] defines the messages, [`answers`] the HTTP
//!   answers' bodies, [`candles_json`] the `/ohlcv` body written straight
//!   from the candles, [`openapi`] the document describing the routes
//!   (`/openapi.json`), [`errors`] the HTTP error shape, [`security`] the checks in front of every route (Host, Origin,
//!   CORS, form bodies, rate limit).
//!
//! The server itself runs on its own actix-web worker threads; the actor
//! only owns its lifetime, on an arbiter of its own (so that the monitor
//! sees its heartbeats stop if it stalls, and the supervisor can replace
//! it). The supervisor owns shutdown, so the server
//! installs no signal handlers.

pub mod answers;
pub mod assets;
pub mod broadcast;
pub mod candles_json;
pub mod encoding;
pub mod errors;
pub mod http;
pub mod logs;
pub mod openapi;
pub mod outbox;
pub mod protocol;
pub mod requests;
pub mod security;
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
pub use self::security::GatewaySettings;
use self::security::Security;
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
    /// Who may call the gateway and how often, from the config that ran
    /// when the gateway started: a change applies at its next start.
    pub settings: Arc<GatewaySettings>,
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
    threads: ServerThreads,
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
    // One for all workers, so the rate limit is per client, not per worker.
    let security = Arc::new(Security::new(&deps.settings));
    let threads = ServerThreads::default();
    let workers_seen = threads.clone();
    let server = HttpServer::new(move || {
        // The factory runs once on each worker's thread.
        workers_seen.add_current();
        let deps = deps.clone();
        let closing = closing.clone();
        let security = security.clone();
        App::new().configure(move |cfg| http::configure(cfg, deps, closing, security))
    })
    .on_connect(set_up_connection)
    .disable_signals()
    .workers(workers.max(1))
    .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
    .listen(listener.try_clone()?)?;
    Ok(BoundServer {
        server: server.run(),
        addr: bound,
        close_sessions,
        threads,
    })
}

/// The threads of one HTTP server's workers, for its CPU time. Inside an
/// actix System (as the supervisor runs it) the workers are arbiters named
/// like every other arbiter, so they are recognised by id, recorded as each
/// one starts; the acceptor thread is recognised by its name.
#[derive(Clone, Default)]
struct ServerThreads(Arc<std::sync::Mutex<Vec<String>>>);

impl ServerThreads {
    /// Records the calling thread (Linux: its id under `/proc/self/task`).
    fn add_current(&self) {
        // `/proc/thread-self` links to `<pid>/task/<tid>`.
        let Ok(link) = std::fs::read_link("/proc/thread-self") else {
            return;
        };
        if let Some(tid) = link.file_name().and_then(|n| n.to_str()) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(tid.to_owned());
        }
    }

    /// CPU seconds (user + system) of the server's workers and of the
    /// process's acceptor threads (Linux only; with several servers in one
    /// process, as in tests, the acceptors of all).
    fn cpu_seconds(&self) -> Option<f64> {
        let workers = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut total = 0.0;
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let task = task.ok()?;
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // the thread ended meanwhile
            };
            let Some((name, seconds)) = stat_cpu_seconds_named(&stat) else {
                continue;
            };
            let tid = task.file_name();
            if name.starts_with("actix-server") || workers.iter().any(|w| tid == w.as_str()) {
                total += seconds;
            }
        }
        Some(total)
    }
}

/// Kernel send buffer of one client connection. Linux grows a socket's
/// send buffer up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default) when
/// the peer does not read, so a thousand stuck WebSocket clients could pin
/// gigabytes of kernel memory; capped, a stuck client's sends block after
/// this much and its session ends at [`ws::SEND_TIMEOUT`]. 256 KiB still
/// fills a 20 Mbit/s link at 100 ms round trip.
pub const CLIENT_SEND_BUFFER: usize = 256 * 1024;

/// Sets up each accepted connection: its send buffer capped at
/// [`CLIENT_SEND_BUFFER`], and `TCP_NODELAY`, because a WebSocket frame is
/// a whole message that should leave at once: with Nagle's algorithm a
/// small frame behind an unacknowledged one waits for the peer's delayed
/// ACK (40 ms on Linux), which the fan-out benchmark showed as the p99.
fn set_up_connection(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let socket = socket2::SockRef::from(stream);
        if let Err(error) = socket.set_send_buffer_size(CLIENT_SEND_BUFFER) {
            tracing::debug!(%error, "send buffer not limited");
        }
        if let Err(error) = socket.set_tcp_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
    }
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
    threads: ServerThreads,
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
            threads: bound.threads,
        }
    }

    fn heartbeat(&mut self) {
        let metrics = GatewayMetrics {
            common: CommonMetrics::now(self.cpu.sample_from(self.threads.cpu_seconds())),
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

#[cfg(test)]
mod tests;
