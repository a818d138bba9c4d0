//! The supervisor actor.
//!
//! Children: the storage thread, the monitor, the gateway and one
//! datasource per enabled exchange. Each child carries a
//! [`LifeGuard`] that reports its death (panic or early stop); the monitor
//! reports children that missed three heartbeats. Either way the child is
//! restarted alone (`one_for_one`) after a backoff, and marked `failed` and
//! retried on a slow schedule when it dies too often. The process never
//! exits because one child misbehaves.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ohlcv_actors::control::{ApplyReport, ChildStatus, ControlError, StatusReport};
use ohlcv_actors::datasource::{
    Datasource, DatasourceDeps, DatasourceSettings, ReloadSettings, StopDatasource,
};
use ohlcv_actors::gateway::broadcast::Broadcaster;
use ohlcv_actors::gateway::logs::LogHistory;
use ohlcv_actors::gateway::{
    serve_listener, FreezeGateway, Gateway, GatewayDeps, GatewaySettings, StopGateway,
};
use ohlcv_actors::lifecycle::{
    process_threads, ChildExited, ChildId, ExitReason, HeartbeatSink, LifeGuard,
};
use ohlcv_actors::monitor::{
    FreezeMonitor, HeartbeatBoard, Monitor, MonitorDeps, Unwatch, Watch, WorkerStalled,
};
use ohlcv_actors::storage::{
    spawn_storage, FlushOutcome, StorageChannels, StorageHandle, StorageSettings,
};
use ohlcv_actors::{HEARTBEAT_INTERVAL, MISSED_HEARTBEATS_LIMIT};
use ohlcv_domain::config::{Config, ConfigError, ConfigStore, ExchangeConfig};
use ohlcv_domain::time::now_ms;
use ohlcv_domain::{ErrorChain, ExchangeId};
use ohlcv_exchanges::{registry, MarketSource};
use ohlcv_storage::rescue::RescueFile;
use ohlcv_storage::Database;

use crate::abandoned::{AbandonedThreads, MAX_ABANDONED_PER_CHILD};
use crate::control::{SupervisorControl, TokenCell};
use crate::policy::{with_jitter, RestartDecision, RestartPolicy, RestartTracker};

/// How long a datasource may take to hand over its last updates and stop
/// before the supervisor abandons its thread (a blocked thread never
/// answers).
const DATASOURCE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the gateway may take to finish open requests at shutdown.
const GATEWAY_STOP_TIMEOUT: Duration = Duration::from_secs(6);
/// The whole of a shutdown, from SIGTERM to exit: under the 10 s a process
/// manager usually waits before SIGKILL (systemd's default is 90 s, Docker's
/// and Kubernetes' 10 s and 30 s). Whatever is not written by then is in the
/// rescue file.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_millis(9_500);
/// Of [`SHUTDOWN_BUDGET`], what datasources get to hand over their last
/// updates; what they cannot hand over in time goes to the rescue file.
const SHUTDOWN_DATASOURCE_BUDGET: Duration = Duration::from_secs(2);
/// Of [`SHUTDOWN_BUDGET`], what is kept back after the storage flush for
/// rescuing the queue should the storage thread not answer, and for the
/// gateway and monitor to stop.
const SHUTDOWN_RESERVE: Duration = Duration::from_millis(1_500);
/// HTTP worker threads: UI clients are few, and every thread costs memory.
const GATEWAY_WORKERS: usize = 2;

/// Everything the supervisor starts from, prepared by `main`.
pub struct SupervisorSetup {
    /// The config file.
    pub store: ConfigStore,
    /// Its content, as [`load_config`] accepts it.
    pub config: Config,
    /// The opened database (opened by `main` so that a refused file stops
    /// the process before anything starts).
    pub database: Database,
    /// Fan-out to UI clients (shared with the log layer).
    pub broadcaster: Broadcaster,
    /// Log history (shared with the log layer).
    pub logs: LogHistory,
    /// The HTTP listener, bound by `main` before the database is opened so
    /// that a port in use stops the process before it touches any file.
    /// The supervisor keeps it for the life of the process: a restarted
    /// gateway serves the same socket.
    pub listener: TcpListener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Restarting,
    Failed,
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

enum Handle {
    None,
    Storage {
        thread: std::thread::JoinHandle<()>,
        retired: Arc<AtomicBool>,
    },
    Monitor(Addr<Monitor>, ArbiterHandle),
    Gateway(Addr<Gateway>, ArbiterHandle),
    Datasource {
        addr: Addr<Datasource>,
        arbiter: ArbiterHandle,
        retired: Arc<AtomicBool>,
    },
}

struct Child {
    generation: u64,
    state: State,
    restarts: u32,
    last_error: Option<String>,
    started_at: Option<Instant>,
    started_at_ms: Option<i64>,
    tracker: RestartTracker,
    handle: Handle,
    pending_restart: Option<SpawnHandle>,
}

impl Child {
    fn new() -> Self {
        Child {
            generation: 0,
            state: State::Stopped,
            restarts: 0,
            last_error: None,
            started_at: None,
            started_at_ms: None,
            tracker: RestartTracker::default(),
            handle: Handle::None,
            pending_restart: None,
        }
    }
}

/// The settings that only a new process applies, as this process started.
#[derive(Debug, Clone, PartialEq)]
struct StartupSettings {
    port: u16,
    bind: IpAddr,
    database_path: PathBuf,
}

impl StartupSettings {
    fn of(config: &Config) -> Self {
        StartupSettings {
            port: config.port,
            bind: config.bind,
            database_path: config.database_path.clone(),
        }
    }

    /// The keys of `config` that differ from what runs.
    fn pending_in(&self, config: &Config) -> Vec<&'static str> {
        let mut pending = Vec::new();
        if config.port != self.port {
            pending.push("port");
        }
        if config.bind != self.bind {
            pending.push("bind");
        }
        if config.database_path != self.database_path {
            pending.push("database_path");
        }
        pending
    }
}

/// The supervisor actor. Runs on the system arbiter.
pub struct Supervisor {
    store: ConfigStore,
    config: Config,
    startup: StartupSettings,
    database_path: PathBuf,
    first_database: Option<Database>,
    policy: RestartPolicy,
    children: BTreeMap<ChildId, Child>,
    storage: StorageChannels,
    broadcaster: Broadcaster,
    logs: LogHistory,
    heartbeats: HeartbeatSink,
    board: HeartbeatBoard,
    sources: HashMap<ExchangeId, Arc<dyn MarketSource>>,
    listener: TcpListener,
    gateway_addr: SocketAddr,
    token: TokenCell,
    /// What the running gateway was started with, to tell which gateway
    /// keys of a new config wait for its next start.
    gateway_settings: GatewaySettings,
    next_generation: u64,
    started: Instant,
    shutting_down: bool,
    abandoned: AbandonedThreads,
}

impl Supervisor {
    /// A supervisor that starts every child when started.
    pub fn new(setup: SupervisorSetup) -> Self {
        let database_path = setup.database.path().to_path_buf();
        let gateway_addr = setup
            .listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(setup.config.bind, setup.config.port));
        Supervisor {
            token: TokenCell::new(setup.config.api_token.clone()),
            store: setup.store,
            startup: StartupSettings::of(&setup.config),
            gateway_settings: GatewaySettings::from_config(&setup.config),
            config: setup.config,
            storage: StorageChannels::new(RescueFile::for_database(&database_path)),
            database_path,
            first_database: Some(setup.database),
            policy: RestartPolicy::default(),
            children: BTreeMap::new(),
            broadcaster: setup.broadcaster,
            logs: setup.logs,
            heartbeats: HeartbeatSink::default(),
            board: HeartbeatBoard::default(),
            sources: HashMap::new(),
            listener: setup.listener,
            gateway_addr,
            next_generation: 0,
            started: Instant::now(),
            shutting_down: false,
            abandoned: AbandonedThreads::default(),
        }
    }

    /// Uses `policy` instead of the default (tests shorten the delays).
    pub fn with_policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The gateway's handle on this supervisor at `addr`.
    fn control(&self, addr: Addr<Self>) -> SupervisorControl {
        SupervisorControl::new(addr, self.token.clone())
    }

    /// Starts the supervisor and answers its address with a handle for
    /// commanding it as the gateway does (tests and embedders).
    pub fn start_with_control(self) -> (Addr<Self>, SupervisorControl) {
        let token = self.token.clone();
        let addr = self.start();
        (addr.clone(), SupervisorControl::new(addr, token))
    }

    fn storage_handle(&self) -> StorageHandle {
        self.storage.handle()
    }

    fn storage_settings(config: &Config) -> StorageSettings {
        StorageSettings {
            batch_interval: Duration::from_millis(config.batch_interval),
            max_records: config.max_records,
            max_queued: ohlcv_actors::storage::MAX_QUEUED_CANDLES,
        }
    }

    fn datasource_settings(config: &Config, exchange: ExchangeId) -> DatasourceSettings {
        DatasourceSettings {
            symbols: config
                .exchanges
                .get(&exchange)
                .map(|e| e.symbols.clone())
                .unwrap_or_default(),
            intervals: config.intervals.clone(),
            bootstrap_load: config.bootstrap_load,
        }
    }

    fn guard(&mut self, ctx: &mut Context<Self>, id: ChildId) -> LifeGuard {
        self.next_generation += 1;
        let generation = self.next_generation;
        let child = self.children.entry(id).or_insert_with(Child::new);
        child.generation = generation;
        LifeGuard::new(id, generation, ctx.address().recipient())
    }

    /// Starts (or restarts) one child; a failure to start counts as a death.
    fn start_child(&mut self, ctx: &mut Context<Self>, id: ChildId) {
        if self.shutting_down {
            return;
        }
        if let Some(child) = self.children.get_mut(&id) {
            if let Some(timer) = child.pending_restart.take() {
                ctx.cancel_future(timer);
            }
        }
        let stuck = self.abandoned.of(id);
        if stuck >= MAX_ABANDONED_PER_CHILD {
            let error = format!(
                "{stuck} threads of earlier incarnations are still stalled; not starting another until one ends"
            );
            tracing::error!(child = %id, %error, "child not started");
            self.child_died(ctx, id, error);
            return;
        }
        let guard = self.guard(ctx, id);
        let generation = guard.generation();
        match self.spawn_child(ctx, id, guard) {
            Ok(handle) => {
                let child = self.children.entry(id).or_insert_with(Child::new);
                child.handle = handle;
                child.state = State::Running;
                child.started_at = Some(Instant::now());
                child.started_at_ms = Some(now_ms());
                self.watch(id, generation);
            }
            Err(error) => {
                tracing::error!(child = %id, %error, "child could not start");
                self.child_died(ctx, id, error);
            }
        }
    }

    fn spawn_child(
        &mut self,
        ctx: &mut Context<Self>,
        id: ChildId,
        guard: LifeGuard,
    ) -> Result<Handle, String> {
        match id {
            ChildId::Storage => {
                let database = match self.first_database.take() {
                    Some(db) => db,
                    None => Database::open(&self.database_path)
                        .map_err(|e| ErrorChain(&e).to_string())?,
                };
                let retired = Arc::new(AtomicBool::new(false));
                let thread = spawn_storage(
                    database,
                    &self.storage,
                    Self::storage_settings(&self.config),
                    self.heartbeats.clone(),
                    guard,
                    retired.clone(),
                )
                .map_err(|e| format!("storage thread: {e}"))?;
                Ok(Handle::Storage { thread, retired })
            }
            ChildId::Monitor => {
                let deps = MonitorDeps {
                    broadcaster: self.broadcaster.clone(),
                    stalls: ctx.address().recipient(),
                    board: self.board.clone(),
                    database_path: self.database_path.clone(),
                };
                let arbiter = Arbiter::new().handle();
                let addr = Monitor::start_in_arbiter(&arbiter, move |_| Monitor::new(deps, guard));
                self.heartbeats.set(addr.clone().recipient());
                // A new monitor knows nobody yet: watch every running child.
                for (child_id, child) in &self.children {
                    if child.state == State::Running && *child_id != ChildId::Monitor {
                        addr.do_send(Watch {
                            child: *child_id,
                            generation: child.generation,
                        });
                    }
                }
                Ok(Handle::Monitor(addr, arbiter))
            }
            ChildId::Gateway => {
                let deps = GatewayDeps {
                    control: Arc::new(self.control(ctx.address())),
                    storage: self.storage_handle(),
                    broadcaster: self.broadcaster.clone(),
                    logs: self.logs.clone(),
                    // Each incarnation takes the gateway keys of the config
                    // that runs when it starts.
                    settings: Arc::new(GatewaySettings::from_config(self.config())),
                };
                self.gateway_settings = GatewaySettings::from_config(self.config());
                // Every incarnation serves the socket bound at start.
                let server = serve_listener(deps, &self.listener, GATEWAY_WORKERS)
                    .map_err(|e| format!("cannot serve {}: {e}", self.gateway_addr))?;
                let (broadcaster, heartbeats) = (self.broadcaster.clone(), self.heartbeats.clone());
                let arbiter = Arbiter::new().handle();
                let addr = Gateway::start_in_arbiter(&arbiter, move |_| {
                    Gateway::new(server, broadcaster, heartbeats, guard)
                });
                Ok(Handle::Gateway(addr, arbiter))
            }
            ChildId::Datasource(exchange) => {
                let source = self.source(exchange)?;
                let retired = Arc::new(AtomicBool::new(false));
                let deps = DatasourceDeps {
                    source,
                    storage: self.storage_handle(),
                    broadcaster: self.broadcaster.clone(),
                    heartbeats: self.heartbeats.clone(),
                    retired: retired.clone(),
                };
                let settings = Self::datasource_settings(&self.config, exchange);
                let arbiter = Arbiter::new().handle();
                let addr = Datasource::start_in_arbiter(&arbiter, move |_| {
                    Datasource::new(deps, settings, guard)
                });
                Ok(Handle::Datasource {
                    addr,
                    arbiter,
                    retired,
                })
            }
        }
    }

    /// The adapter of `exchange`, built once and kept across datasource
    /// restarts.
    fn source(&mut self, exchange: ExchangeId) -> Result<Arc<dyn MarketSource>, String> {
        if let Some(source) = self.sources.get(&exchange) {
            return Ok(source.clone());
        }
        let config = self
            .config
            .exchanges
            .get(&exchange)
            .cloned()
            .unwrap_or_default();
        let source = registry::build(exchange, &config).map_err(|e| e.to_string())?;
        self.sources.insert(exchange, source.clone());
        Ok(source)
    }

    fn watch(&self, child: ChildId, generation: u64) {
        if let Some(Handle::Monitor(addr, _)) =
            self.children.get(&ChildId::Monitor).map(|c| &c.handle)
        {
            if child != ChildId::Monitor {
                let _ = addr.try_send(Watch { child, generation });
            }
        }
    }

    fn unwatch(&self, child: ChildId) {
        if let Some(Handle::Monitor(addr, _)) =
            self.children.get(&ChildId::Monitor).map(|c| &c.handle)
        {
            let _ = addr.try_send(Unwatch { child });
        }
        self.board.remove(child);
    }

    /// Ends what is left of a dead or stalled incarnation: its thread is
    /// stopped (a dead actor's arbiter thread would otherwise live on, one
    /// leaked thread per death), and one that is blocked (`stalled`) is
    /// retired, to end itself when it wakes, and counted until it does.
    fn retire(&mut self, id: ChildId, handle: Handle, stalled: bool) {
        match handle {
            Handle::Datasource {
                retired, arbiter, ..
            } => {
                retired.store(true, Ordering::Release);
                if stalled {
                    self.abandoned.arbiter(id, &arbiter);
                }
                arbiter.stop();
            }
            Handle::Monitor(_, arbiter) | Handle::Gateway(_, arbiter) => {
                if stalled {
                    self.abandoned.arbiter(id, &arbiter);
                }
                arbiter.stop();
            }
            Handle::Storage { thread, retired } => {
                retired.store(true, Ordering::Release);
                if !thread.is_finished() {
                    self.abandoned.thread(id, thread);
                }
            }
            Handle::None => {}
        }
    }

    /// Records a death and schedules the restart the policy decides.
    fn child_died(&mut self, ctx: &mut Context<Self>, id: ChildId, error: String) {
        let policy = self.policy;
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        let ran_for = child.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        child.last_error = Some(error.clone());
        let handle = std::mem::replace(&mut child.handle, Handle::None);
        self.retire(id, handle, false);
        let Some(child) = self.children.get_mut(&id) else {
            return;
        };
        let delay = match child.tracker.on_exit(&policy, Instant::now(), ran_for) {
            RestartDecision::RestartAfter(delay) => {
                child.state = State::Restarting;
                let delay = with_jitter(delay);
                tracing::warn!(child = %id, error = %error, restart_in_ms = delay.as_millis() as u64, "child died; restarting");
                delay
            }
            RestartDecision::GiveUp { retry_after } => {
                child.state = State::Failed;
                tracing::error!(child = %id, error = %error, retry_in_s = retry_after.as_secs(),
                    "child failed too often; retrying on the slow schedule");
                retry_after
            }
        };
        child.restarts += 1;
        let timer = ctx.run_later(delay, move |act, ctx| act.start_child(ctx, id));
        if let Some(child) = self.children.get_mut(&id) {
            child.pending_restart = Some(timer);
        }
    }

    /// Takes a child out of service on purpose; its exit is then ignored.
    /// Answers once a datasource has handed over its last updates (or was
    /// abandoned after a timeout).
    fn stop_child(
        &mut self,
        ctx: &mut Context<Self>,
        id: ChildId,
    ) -> impl Future<Output = ()> + 'static {
        self.unwatch(id);
        let handle = match self.children.get_mut(&id) {
            Some(child) => {
                if let Some(timer) = child.pending_restart.take() {
                    ctx.cancel_future(timer);
                }
                let ran_for = child.started_at.map_or(Duration::ZERO, |t| t.elapsed());
                child.tracker.on_stop(&self.policy, ran_for);
                child.state = State::Stopped;
                child.started_at = None;
                std::mem::replace(&mut child.handle, Handle::None)
            }
            None => Handle::None,
        };
        let abandoned = self.abandoned.tracker(id);
        async move {
            match handle {
                Handle::Datasource {
                    addr,
                    arbiter,
                    retired,
                } => {
                    if tokio::time::timeout(DATASOURCE_STOP_TIMEOUT, addr.send(StopDatasource))
                        .await
                        .is_err()
                    {
                        tracing::error!(child = %id, "datasource did not stop in time; abandoning its thread");
                        abandoned.track(&arbiter);
                    }
                    retired.store(true, Ordering::Release);
                    arbiter.stop();
                }
                Handle::Monitor(_, arbiter) => {
                    arbiter.stop();
                }
                Handle::Gateway(addr, arbiter) => {
                    let _ =
                        tokio::time::timeout(GATEWAY_STOP_TIMEOUT, addr.send(StopGateway)).await;
                    arbiter.stop();
                }
                Handle::Storage { .. } | Handle::None => {}
            }
        }
    }

    fn datasource_ids(&self) -> Vec<ExchangeId> {
        self.children
            .iter()
            .filter_map(|(id, child)| match (id, child.state) {
                (
                    ChildId::Datasource(exchange),
                    State::Running | State::Restarting | State::Failed,
                ) => Some(*exchange),
                _ => None,
            })
            .collect()
    }

    /// Builds the `/status` report.
    pub(crate) fn status(&mut self) -> StatusReport {
        let abandoned: BTreeMap<ChildId, usize> = self
            .children
            .keys()
            .map(|id| (*id, self.abandoned.of(*id)))
            .collect();
        let children = self
            .children
            .iter()
            .map(|(id, child)| {
                let record = self
                    .board
                    .get(*id)
                    .filter(|r| r.generation == child.generation);
                ChildStatus {
                    name: id.to_string(),
                    state: child.state.as_str().into(),
                    restarts: child.restarts,
                    last_error: child.last_error.clone(),
                    started_at: child
                        .started_at_ms
                        .filter(|_| child.state == State::Running),
                    last_heartbeat: record.as_ref().map(|r| r.at_ms),
                    abandoned_threads: abandoned.get(id).copied().unwrap_or(0),
                    metrics: record.map(|r| r.metrics),
                }
            })
            .collect();
        StatusReport {
            uptime_s: self.started.elapsed().as_secs(),
            threads: process_threads(),
            abandoned_threads: self.abandoned.total(),
            children,
        }
    }

    pub(crate) fn config_path(&self) -> &std::path::Path {
        self.store.path()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Saves `config` atomically if this build can run it ([`accept`]);
    /// nothing else changes when it is refused.
    pub(crate) fn save_config(&self, config: &Config) -> Result<(), ControlError> {
        accept(config)
            .and_then(|()| self.store.save(config))
            .map_err(config_error)
    }

    /// Re-reads the config file, as [`load_config`] does at start.
    pub(crate) fn load_config(&self) -> Result<Config, ControlError> {
        load_config(&self.store).map_err(config_error)
    }

    /// Moves from the running config to `new`: starts, stops, reloads or
    /// restarts what changed. `force_restart` restarts every datasource
    /// with fresh adapters (the `/restart` route).
    pub(crate) fn apply(
        &mut self,
        ctx: &mut Context<Self>,
        new: Config,
        force_restart: bool,
    ) -> ResponseActFuture<Self, ApplyReport> {
        let old = std::mem::replace(&mut self.config, new);
        let new = self.config.clone();
        // The gateway checks the token of the config that now runs.
        self.token.set(new.api_token.clone());
        let mut report = ApplyReport {
            // Compared with what runs, not with the last saved file.
            pending_restart: {
                let mut pending = self.startup.pending_in(&new);
                pending.extend(
                    self.gateway_settings
                        .changed_keys(&GatewaySettings::from_config(&new)),
                );
                pending
            },
            ..ApplyReport::default()
        };
        let storage = self.storage_handle();
        let storage_settings = Self::storage_settings(&new);
        let storage_changed = Self::storage_settings(&old) != storage_settings;

        let mut stops = Vec::new();
        let mut starts = Vec::new();
        let mut reloads = Vec::new();
        for exchange in ExchangeId::ALL {
            let was = old.exchanges.get(&exchange).filter(|e| e.enabled);
            let is = new.exchanges.get(&exchange).filter(|e| e.enabled);
            let running = self
                .children
                .get(&ChildId::Datasource(exchange))
                .is_some_and(|c| c.state != State::Stopped);
            match (was, is) {
                (_, None) if running => {
                    stops.push(exchange);
                    report.stopped.push(exchange);
                }
                (_, None) => {}
                (None, Some(_)) => {
                    starts.push(exchange);
                    report.started.push(exchange);
                }
                (Some(before), Some(after)) => {
                    let adapter_changed = adapter_settings(before) != adapter_settings(after);
                    let settings_changed = Self::datasource_settings(&old, exchange)
                        != Self::datasource_settings(&new, exchange);
                    if force_restart || adapter_changed || !running {
                        stops.push(exchange);
                        starts.push(exchange);
                        report.reloaded.push(exchange);
                    } else if settings_changed {
                        reloads.push(exchange);
                        report.reloaded.push(exchange);
                    }
                }
            }
        }
        if force_restart {
            self.sources.clear();
        }
        // An adapter built from settings that changed is built anew.
        for exchange in ExchangeId::ALL {
            let before = old.exchanges.get(&exchange).map(adapter_settings);
            let after = new.exchanges.get(&exchange).map(adapter_settings);
            if before != after {
                self.sources.remove(&exchange);
            }
        }
        for exchange in reloads {
            if let Some(Handle::Datasource { addr, .. }) = self
                .children
                .get(&ChildId::Datasource(exchange))
                .map(|c| &c.handle)
            {
                let _ = addr.try_send(ReloadSettings(Self::datasource_settings(&new, exchange)));
            }
        }
        let stopping: Vec<_> = stops
            .into_iter()
            .map(|exchange| self.stop_child(ctx, ChildId::Datasource(exchange)))
            .collect();
        let work = async move {
            futures_util::future::join_all(stopping).await;
            if storage_changed {
                if let Err(error) = storage.reconfigure(storage_settings).await {
                    tracing::warn!(error = %ErrorChain(&error), "storage settings not applied");
                }
            }
        };
        Box::pin(work.into_actor(self).map(move |(), act, ctx| {
            act.start_datasources(ctx, starts);
            report
        }))
    }

    /// Starts the datasources of `exchanges` that are enabled.
    pub(crate) fn start_datasources(
        &mut self,
        ctx: &mut Context<Self>,
        exchanges: Vec<ExchangeId>,
    ) {
        for exchange in exchanges {
            if self
                .config
                .exchanges
                .get(&exchange)
                .is_some_and(|e| e.enabled)
            {
                self.start_child(ctx, ChildId::Datasource(exchange));
            }
        }
    }

    /// Stops every datasource, waits, and answers which were running.
    pub(crate) fn stop_datasources(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> (Vec<ExchangeId>, impl Future<Output = ()> + 'static) {
        let ids = self.datasource_ids();
        let stopping: Vec<_> = ids
            .iter()
            .map(|exchange| self.stop_child(ctx, ChildId::Datasource(*exchange)))
            .collect();
        (ids, async move {
            futures_util::future::join_all(stopping).await;
        })
    }

    pub(crate) fn storage(&self) -> StorageHandle {
        self.storage_handle()
    }

    pub(crate) fn cached_source(
        &mut self,
        exchange: ExchangeId,
    ) -> Result<Arc<dyn MarketSource>, String> {
        self.source(exchange)
    }
}

/// The settings an exchange adapter is built from; a change needs a new one.
fn adapter_settings(exchange: &ExchangeConfig) -> impl PartialEq + '_ {
    (&exchange.rest_url, &exchange.ws_url, &exchange.simulation)
}

/// Reads the config file at `store` and accepts it as the supervisor
/// accepts every config: the domain rules ([`Config::validate`]), then what
/// this build can run ([`registry::check_config`]). What `main` starts
/// from, and what `/restart` re-reads.
///
/// # Errors
/// [`ConfigError::Io`] if unreadable, [`ConfigError::Parse`] or
/// [`ConfigError::Invalid`] naming the offending key.
pub fn load_config(store: &ConfigStore) -> Result<Config, ConfigError> {
    let config = store.load()?;
    accept(&config)?;
    Ok(config)
}

/// The domain rules, then what this build can run, asked of the adapter
/// registry: every enabled exchange has an adapter serving every interval.
fn accept(config: &Config) -> Result<(), ConfigError> {
    config.validate()?;
    registry::check_config(config)
}

fn config_error(error: ConfigError) -> ControlError {
    let message = ErrorChain(&error).to_string();
    match error {
        ConfigError::Io { .. } => ControlError::Internal(message),
        ConfigError::Parse { .. } | ConfigError::Invalid { .. } => {
            ControlError::invalid("invalid_config", message)
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Commands can come in bursts (many UI clients); child deaths must
        // still get through, so the mailbox is generous.
        ctx.set_mailbox_capacity(1024);
        // The monitor first, so the other children's first heartbeats
        // have somewhere to go.
        self.start_child(ctx, ChildId::Monitor);
        self.start_child(ctx, ChildId::Storage);
        self.start_child(ctx, ChildId::Gateway);
        // Nobody watches the monitor's heartbeats but the supervisor.
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| act.check_monitor(ctx));
        let enabled: Vec<ExchangeId> = self.config.enabled_exchanges().map(|(id, _)| id).collect();
        for exchange in enabled {
            self.start_child(ctx, ChildId::Datasource(exchange));
        }
    }
}

impl Handler<ChildExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildExited, ctx: &mut Self::Context) {
        let Some(child) = self.children.get(&msg.child) else {
            return;
        };
        if self.shutting_down || child.generation != msg.generation || child.state != State::Running
        {
            return;
        }
        let error = match msg.reason {
            ExitReason::Panicked(message) => format!("panicked: {message}"),
            ExitReason::Stopped => "stopped unexpectedly".to_owned(),
        };
        self.unwatch(msg.child);
        self.child_died(ctx, msg.child, error);
    }
}

impl Handler<WorkerStalled> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: WorkerStalled, ctx: &mut Self::Context) {
        let Some(child) = self.children.get_mut(&msg.child) else {
            return;
        };
        if self.shutting_down || child.generation != msg.generation || child.state != State::Running
        {
            return;
        }
        let error = format!(
            "missed {MISSED_HEARTBEATS_LIMIT} heartbeats (silent for {:.1} s)",
            msg.silent_for.as_secs_f64()
        );
        // Retire the stalled incarnation: its thread may be blocked, so it
        // cannot be asked to stop; it stops itself when it wakes up. The
        // replacement starts on a new thread, on the same queues.
        let handle = std::mem::replace(&mut child.handle, Handle::None);
        self.retire(msg.child, handle, true);
        self.unwatch(msg.child);
        self.child_died(ctx, msg.child, error);
    }
}

impl Supervisor {
    /// The monitor reports everybody's stalls but its own: its heartbeat
    /// (the record it keeps on the board) is checked here.
    fn check_monitor(&mut self, ctx: &mut Context<Self>) {
        let Some(child) = self.children.get(&ChildId::Monitor) else {
            return;
        };
        if self.shutting_down || child.state != State::Running {
            return;
        }
        let limit = HEARTBEAT_INTERVAL * MISSED_HEARTBEATS_LIMIT;
        let last_ms = self
            .board
            .get(ChildId::Monitor)
            .filter(|r| r.generation == child.generation)
            .map(|r| r.at_ms)
            .or(child.started_at_ms)
            .unwrap_or_else(now_ms);
        let silent_for = Duration::from_millis(now_ms().saturating_sub(last_ms).max(0) as u64);
        if silent_for > limit {
            let generation = child.generation;
            tracing::warn!(worker = %ChildId::Monitor, silent_s = silent_for.as_secs(), "worker missed its heartbeats");
            Handler::<WorkerStalled>::handle(
                self,
                WorkerStalled {
                    child: ChildId::Monitor,
                    generation,
                    silent_for,
                },
                ctx,
            );
        }
    }
}

/// Blocks a child's thread for a while, as a stuck disk or a bug would, to
/// exercise stall handling. For tests only: no route or command of the API
/// reaches it.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FreezeChild {
    /// The monitor, storage or the gateway (datasources stall through the
    /// simulated exchange's `block_after_updates` fault).
    pub child: ChildId,
    /// How long.
    pub duration: Duration,
}

impl Handler<FreezeChild> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: FreezeChild, _: &mut Self::Context) {
        match (msg.child, self.children.get(&msg.child).map(|c| &c.handle)) {
            (ChildId::Storage, _) => self.storage.handle().freeze(msg.duration),
            (ChildId::Monitor, Some(Handle::Monitor(addr, _))) => {
                addr.do_send(FreezeMonitor(msg.duration));
            }
            (ChildId::Gateway, Some(Handle::Gateway(addr, _))) => {
                addr.do_send(FreezeGateway(msg.duration));
            }
            _ => tracing::warn!(child = %msg.child, "cannot freeze this child"),
        }
    }
}

/// Stops everything in order, within [`SHUTDOWN_BUDGET`]: datasources
/// (their last updates handed over), then storage (every queued candle
/// written, or put in the rescue file), then the gateway and the monitor.
/// Answers how the candles ended.
#[derive(Message)]
#[rtype(result = "FlushOutcome")]
pub struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, FlushOutcome>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        tracing::info!(
            budget_ms = SHUTDOWN_BUDGET.as_millis() as u64,
            "shutting down"
        );
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BUDGET;
        // A storage thread waiting for its restart is started now: it is
        // the one that can write the queue.
        if self
            .children
            .get(&ChildId::Storage)
            .is_some_and(|c| c.state != State::Running)
        {
            self.start_child(ctx, ChildId::Storage);
        }
        let (_, datasources_stopped) = self.stop_datasources(ctx);
        self.shutting_down = true;
        let storage = self.storage_handle();
        let channels = self.storage.clone();
        let gateway = self.stop_child(ctx, ChildId::Gateway);
        let monitor = self.stop_child(ctx, ChildId::Monitor);
        Box::pin(
            async move {
                let handed_over = deadline - (SHUTDOWN_BUDGET - SHUTDOWN_DATASOURCE_BUDGET);
                if tokio::time::timeout_at(handed_over, datasources_stopped)
                    .await
                    .is_err()
                {
                    tracing::error!("datasources did not stop in time; storage goes on without their last updates");
                }
                let flushed_by = deadline - SHUTDOWN_RESERVE;
                let outcome = match tokio::time::timeout_at(
                    flushed_by,
                    storage.shutdown(flushed_by.into_std()),
                )
                .await
                {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(error)) => {
                        tracing::error!(error = %ErrorChain(&error), "storage could not flush; rescuing the queue");
                        channels.rescue_everything()
                    }
                    Err(_) => {
                        tracing::error!("storage did not answer in time; rescuing the queue");
                        channels.rescue_everything()
                    }
                };
                match outcome {
                    FlushOutcome::Saved { rows } => {
                        tracing::info!(rows, success = true, "every queued candle saved")
                    }
                    FlushOutcome::Rescued { candles } => {
                        tracing::error!(candles, "candles kept in the rescue file")
                    }
                    FlushOutcome::Lost { candles } => tracing::error!(candles, "candles lost"),
                }
                let _ = tokio::time::timeout_at(deadline, async {
                    gateway.await;
                    monitor.await;
                })
                .await;
                outcome
            }
            .into_actor(self),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_keep_their_reason_for_the_client() {
        let io = ConfigError::Io {
            path: "config.json".into(),
            source: std::io::Error::other("disk full"),
        };
        match config_error(io) {
            ControlError::Internal(message) => assert_eq!(message, "config.json: disk full"),
            other => panic!("{other:?}"),
        }
        let invalid = Config::from_json(r#"{"exchanges":{},"port":"x"}"#).unwrap_err();
        match config_error(invalid) {
            ControlError::Invalid { code, message } => {
                assert_eq!(code, "invalid_config");
                assert!(message.starts_with("port: invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
