//! The monitor: collects heartbeats, publishes `worker_metrics` and
//! `system_info`, reports stalled workers to the supervisor, and watches
//! the process's memory for growth.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{json, Value};
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::gateway::broadcast::Broadcaster;
use crate::gateway::protocol::ServerMessage;
use crate::lifecycle::{ChildId, CpuMeter, Heartbeat, LifeGuard};
use crate::metrics::{CommonMetrics, MonitorMetrics, WorkerMetrics};
use crate::{HEARTBEAT_INTERVAL, MISSED_HEARTBEATS_LIMIT};

/// How often `worker_metrics` is published (seed 004: every 3 s).
pub const WORKER_METRICS_INTERVAL: Duration = Duration::from_secs(3);
/// How often `system_info` is published (seed 004: every 5 s).
pub const SYSTEM_INFO_INTERVAL: Duration = Duration::from_secs(5);
/// The resident memory measured this long after start is the baseline that
/// growth is judged against: by then history sync has settled.
const RSS_BASELINE_AFTER: Duration = Duration::from_secs(120);

/// The last heartbeat of a child, kept where the supervisor can read it for
/// `/status`.
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    /// Incarnation that sent it.
    pub generation: u64,
    /// Arrival time, UTC ms.
    pub at_ms: i64,
    /// The child's metrics.
    pub metrics: WorkerMetrics,
}

/// Last heartbeats by child. Shared between the monitor (which writes it)
/// and the supervisor (which reads it), and kept across monitor restarts.
#[derive(Clone, Default)]
pub struct HeartbeatBoard {
    records: Arc<Mutex<BTreeMap<ChildId, HeartbeatRecord>>>,
}

impl HeartbeatBoard {
    /// The last heartbeat of `child`, if any.
    pub fn get(&self, child: ChildId) -> Option<HeartbeatRecord> {
        self.lock().get(&child).cloned()
    }

    /// Forgets a child (it was stopped on purpose).
    pub fn remove(&self, child: ChildId) {
        self.lock().remove(&child);
    }

    fn insert(&self, child: ChildId, record: HeartbeatRecord) {
        self.lock().insert(child, record);
    }

    fn snapshot(&self) -> BTreeMap<ChildId, HeartbeatRecord> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ChildId, HeartbeatRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sent to the supervisor when a watched child missed
/// [`MISSED_HEARTBEATS_LIMIT`] heartbeats in a row.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerStalled {
    /// Which child.
    pub child: ChildId,
    /// Which incarnation was silent.
    pub generation: u64,
    /// How long it has been silent.
    pub silent_for: Duration,
}

/// Starts expecting heartbeats from incarnation `generation` of `child`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Watch {
    /// Which child.
    pub child: ChildId,
    /// Which incarnation.
    pub generation: u64,
}

/// Stops expecting heartbeats from `child` (stopped on purpose).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    /// Which child.
    pub child: ChildId,
}

struct Watched {
    generation: u64,
    since: Instant,
    last_seen: Option<Instant>,
    flagged: bool,
}

/// What the monitor needs from the outside.
pub struct MonitorDeps {
    /// Where `worker_metrics` and `system_info` go.
    pub broadcaster: Broadcaster,
    /// Where stalls are reported.
    pub stalls: Recipient<WorkerStalled>,
    /// Where last heartbeats are kept.
    pub board: HeartbeatBoard,
    /// The database file, for its size and its disk.
    pub database_path: PathBuf,
}

/// The monitor actor. Runs on its own arbiter.
pub struct Monitor {
    deps: MonitorDeps,
    watched: HashMap<ChildId, Watched>,
    system: Option<System>,
    disks: Option<Disks>,
    pid: Option<Pid>,
    started: Instant,
    rss_baseline: Option<u64>,
    rss_warned_at: u64,
    cpu: CpuMeter,
    guard: LifeGuard,
}

impl Monitor {
    /// A monitor with nothing watched yet.
    pub fn new(deps: MonitorDeps, guard: LifeGuard) -> Self {
        Monitor {
            deps,
            watched: HashMap::new(),
            // Host metrics are best effort: an unsupported platform gives
            // zeros, never a failed monitor.
            system: System::new().ok(),
            disks: Disks::new_with_refreshed_list().ok(),
            pid: sysinfo::get_current_pid().ok(),
            started: Instant::now(),
            rss_baseline: None,
            rss_warned_at: 0,
            cpu: CpuMeter::default(),
            guard,
        }
    }

    fn check_stalls(&mut self) {
        let limit = HEARTBEAT_INTERVAL * MISSED_HEARTBEATS_LIMIT;
        let now = Instant::now();
        for (child, watched) in &mut self.watched {
            let silent_for = now.duration_since(watched.last_seen.unwrap_or(watched.since));
            if silent_for > limit && !watched.flagged {
                watched.flagged = true;
                tracing::warn!(worker = %child, silent_s = silent_for.as_secs(), "worker missed its heartbeats");
                let stalled = WorkerStalled {
                    child: *child,
                    generation: watched.generation,
                    silent_for,
                };
                // The supervisor's mailbox is bounded; if it is full the
                // next check (3 s later) reports again, since `flagged` is
                // reset on failure.
                if self.deps.stalls.try_send(stalled).is_err() {
                    watched.flagged = false;
                }
            }
        }
    }

    /// The monitor reports on itself too, so `/status` shows it alive.
    fn record_own_heartbeat(&mut self) {
        let own = MonitorMetrics {
            common: CommonMetrics::now(self.cpu.sample()),
            watched: self.watched.len(),
            clients: self.deps.broadcaster.clients(),
        };
        self.deps.board.insert(
            ChildId::Monitor,
            HeartbeatRecord {
                generation: self.guard.generation(),
                at_ms: ohlcv_domain::time::now_ms(),
                metrics: WorkerMetrics::Monitor(own),
            },
        );
    }

    fn publish_worker_metrics(&mut self) {
        self.record_own_heartbeat();
        let mut data = BTreeMap::new();
        for (child, record) in self.deps.board.snapshot() {
            let current = self
                .watched
                .get(&child)
                .is_some_and(|w| w.generation == record.generation);
            if current || child == ChildId::Monitor {
                data.insert(child, record.metrics);
            }
        }
        self.deps
            .broadcaster
            .publish(&ServerMessage::WorkerMetrics(data));
    }

    fn publish_system_info(&mut self) {
        let info = self.system_info();
        self.watch_rss(info["process"]["rss"].as_u64().unwrap_or(0));
        self.deps
            .broadcaster
            .publish(&ServerMessage::SystemInfo(info));
    }

    /// Host and process metrics in the seed's `system_info` shape.
    fn system_info(&mut self) -> Value {
        let (mut cpu_usage, mut cores, mut total, mut used, mut rss, mut process_cpu) =
            (0.0, 0, 0, 0, 0, 0.0);
        if let Some(system) = self.system.as_mut() {
            system.refresh_cpu_usage();
            system.refresh_memory();
            cpu_usage = system.global_cpu_usage();
            cores = system.cpus().len();
            total = system.total_memory();
            used = system.used_memory();
            if let Some(pid) = self.pid {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_memory().with_cpu(),
                );
                if let Some(p) = system.process(pid) {
                    (rss, process_cpu) = (p.memory(), p.cpu_usage());
                }
            }
        }
        let (disk_free, disk_total) = self.database_disk();
        json!({
            "cpu": {
                "usage": round2(f64::from(cpu_usage)),
                "cores": cores,
                "process": round2(f64::from(process_cpu)),
            },
            "memory": {
                "usagePercent": if total > 0 { round2(used as f64 / total as f64 * 100.0) } else { 0.0 },
                "total": total,
                "used": used,
            },
            "disk": { "free": disk_free, "total": disk_total },
            "database": { "total": database_size(&self.deps.database_path) },
            // Threads share one heap, so the seed's per-process `heapUsed`
            // is the resident set of the whole process.
            "process": { "heapUsed": rss, "rss": rss },
            "uptime": self.started.elapsed().as_secs(),
            "platform": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        })
    }

    /// Free and total bytes of the disk that holds the database.
    fn database_disk(&mut self) -> (u64, u64) {
        let Some(disks) = self.disks.as_mut() else {
            return (0, 0);
        };
        disks.refresh(false);
        let dir = self
            .deps
            .database_path
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .unwrap_or_default();
        disks
            .iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map_or((0, 0), |d| (d.available_space(), d.total_space()))
    }

    /// Warns each time resident memory doubles past its settled baseline:
    /// a long-running collector must not grow.
    fn watch_rss(&mut self, rss: u64) {
        if rss == 0 {
            return;
        }
        match self.rss_baseline {
            None if self.started.elapsed() >= RSS_BASELINE_AFTER => {
                self.rss_baseline = Some(rss);
                self.rss_warned_at = rss;
            }
            Some(_) if rss >= self.rss_warned_at.saturating_mul(2) => {
                tracing::warn!(
                    rss_mb = rss / 1_048_576,
                    baseline_mb = self.rss_baseline.unwrap_or(0) / 1_048_576,
                    "resident memory doubled since the last warning"
                );
                self.rss_warned_at = rss;
            }
            _ => {}
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Bytes on disk of a SQLite database: the file, its WAL and shared memory.
pub fn database_size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name)).ok()
        })
        .map(|m| m.len())
        .sum()
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // One second between stall checks keeps detection within a second
        // of the third missed heartbeat.
        ctx.run_interval(Duration::from_secs(1), |act, _| act.check_stalls());
        ctx.run_interval(WORKER_METRICS_INTERVAL, |act, _| {
            act.publish_worker_metrics()
        });
        ctx.run_interval(SYSTEM_INFO_INTERVAL, |act, _| act.publish_system_info());
        self.record_own_heartbeat();
        // CPU usage needs two samples; take the first now.
        if let Some(system) = self.system.as_mut() {
            system.refresh_cpu_usage();
        }
        tracing::debug!("monitor started");
    }
}

impl Handler<Heartbeat> for Monitor {
    type Result = ();

    fn handle(&mut self, heartbeat: Heartbeat, _: &mut Self::Context) {
        if let Some(watched) = self.watched.get_mut(&heartbeat.child) {
            if watched.generation == heartbeat.generation {
                watched.last_seen = Some(Instant::now());
                watched.flagged = false;
            }
        }
        self.deps.board.insert(
            heartbeat.child,
            HeartbeatRecord {
                generation: heartbeat.generation,
                at_ms: ohlcv_domain::time::now_ms(),
                metrics: heartbeat.metrics,
            },
        );
    }
}

/// Blocks the monitor's thread for the given time, as a bug in a metrics
/// probe would. For tests of stall handling only: no route or command of
/// the API reaches it.
#[doc(hidden)]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FreezeMonitor(pub Duration);

impl Handler<FreezeMonitor> for Monitor {
    type Result = ();

    fn handle(&mut self, msg: FreezeMonitor, _: &mut Self::Context) {
        tracing::warn!(ms = msg.0.as_millis() as u64, "monitor frozen on request");
        std::thread::sleep(msg.0);
    }
}

impl Handler<Watch> for Monitor {
    type Result = ();

    fn handle(&mut self, msg: Watch, _: &mut Self::Context) {
        self.watched.insert(
            msg.child,
            Watched {
                generation: msg.generation,
                since: Instant::now(),
                last_seen: None,
                flagged: false,
            },
        );
    }
}

impl Handler<Unwatch> for Monitor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _: &mut Self::Context) {
        self.watched.remove(&msg.child);
    }
}
