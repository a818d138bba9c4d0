//! What every supervised child shares: its identity, its generation, the
//! guard that reports its death, and the heartbeat it sends.
//!
//! actix's own supervisor does not survive a panic inside a handler, so a
//! child carries a [`LifeGuard`]: when the child's state is dropped, for any
//! reason, the guard tells the supervisor, and says whether a panic was
//! unwinding at the time (with the panic's message, captured by
//! [`install_panic_capture`]).

use std::cell::RefCell;
use std::fmt;

use actix::prelude::*;
use ohlcv_domain::ExchangeId;
use serde::Serialize;

/// Which child of the supervisor a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildId {
    /// The thread that owns the database.
    Storage,
    /// Heartbeats, worker metrics and system info.
    Monitor,
    /// The HTTP and WebSocket server.
    Gateway,
    /// The datasource of one exchange.
    Datasource(ExchangeId),
}

impl fmt::Display for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildId::Storage => f.write_str("storage"),
            ChildId::Monitor => f.write_str("monitor"),
            ChildId::Gateway => f.write_str("gateway"),
            ChildId::Datasource(id) => f.write_str(id.as_str()),
        }
    }
}

impl Serialize for ChildId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It panicked; the panic message.
    Panicked(String),
    /// It stopped without being asked to (an early stop).
    Stopped,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Panicked(msg) => write!(f, "panicked: {msg}"),
            ExitReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// Sent by a child's [`LifeGuard`] when the child is gone.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ChildExited {
    /// Which child.
    pub child: ChildId,
    /// Which incarnation of it; the supervisor ignores stale ones.
    pub generation: u64,
    /// What happened.
    pub reason: ExitReason,
}

/// Reports the death of the child that owns it. Place it in the child's
/// state so it drops with it, on a panic as on a stop.
pub struct LifeGuard {
    child: ChildId,
    generation: u64,
    supervisor: Recipient<ChildExited>,
}

impl LifeGuard {
    /// A guard for incarnation `generation` of `child`.
    pub fn new(child: ChildId, generation: u64, supervisor: Recipient<ChildExited>) -> Self {
        LifeGuard {
            child,
            generation,
            supervisor,
        }
    }

    /// The incarnation this guard belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for LifeGuard {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            ExitReason::Panicked(take_last_panic().unwrap_or_else(|| "unknown panic".into()))
        } else {
            ExitReason::Stopped
        };
        // do_send: this runs in a destructor, possibly while unwinding, where
        // nothing can wait; the supervisor's mailbox holds one message per
        // child death, so it cannot grow without bound.
        self.supervisor.do_send(ChildExited {
            child: self.child,
            generation: self.generation,
            reason,
        });
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn take_last_panic() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}

/// Installs a panic hook that remembers each thread's last panic message
/// (for [`LifeGuard`]) and logs it, then runs the previous hook.
pub fn install_panic_capture() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, panic = %message, "thread panicked");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
        previous(info);
    }));
}

/// Sent by a running child every [`HEARTBEAT_INTERVAL`](crate::HEARTBEAT_INTERVAL)
/// to the monitor, with the child's own metrics.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    /// Which child.
    pub child: ChildId,
    /// Which incarnation.
    pub generation: u64,
    /// The child's metrics, as shown in `worker_metrics` and `/status`.
    pub metrics: crate::metrics::WorkerMetrics,
}

/// Where children send their heartbeats: the current monitor, whichever
/// incarnation that is. The supervisor points it at each new monitor, so
/// children never hold a stale address. Cheap to clone.
#[derive(Clone, Default)]
pub struct HeartbeatSink {
    monitor: std::sync::Arc<std::sync::RwLock<Option<Recipient<Heartbeat>>>>,
}

impl HeartbeatSink {
    /// Points the sink at a (new) monitor.
    pub fn set(&self, monitor: Recipient<Heartbeat>) {
        *self
            .monitor
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(monitor);
    }

    /// Delivers a heartbeat without waiting. A heartbeat that cannot be
    /// delivered (monitor restarting, mailbox full) is dropped: the next one
    /// follows in three seconds, and three lost in a row are what the
    /// monitor is there to notice.
    pub fn send(&self, heartbeat: Heartbeat) {
        let monitor = self
            .monitor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(monitor) = monitor.as_ref() {
            let _ = monitor.try_send(heartbeat);
        }
    }
}

/// CPU time (user + system) consumed by the calling thread so far, in
/// seconds, where the platform tells (Linux); `None` elsewhere.
pub fn thread_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// CPU seconds (user + system) in a `/proc/<pid>/task/<tid>/stat` line,
/// with its thread name (`comm`).
pub fn stat_cpu_seconds_named(stat: &str) -> Option<(&str, f64)> {
    // `tid (comm) state …`: the name may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut fields = stat.get(close + 1..)?.split_ascii_whitespace();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after
    // the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Linux reports in USER_HZ, which is 100 on every mainstream platform.
    Some((stat.get(open + 1..close)?, (utime + stime) / 100.0))
}

fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    stat_cpu_seconds_named(stat).map(|(_, seconds)| seconds)
}

/// Resident memory of the whole process in bytes, where the platform tells
/// (Linux); `None` elsewhere. Cheap enough for every heartbeat.
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages on every platform this runs on in practice.
    Some(pages * 4096)
}

/// Threads of this process (Linux; `None` elsewhere): what `/status`
/// reports so that a leak of threads shows.
pub fn process_threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// Turns successive CPU-time readings into a CPU percentage of one core
/// over each interval, as the seed's `cpuUser`.
#[derive(Debug, Default)]
pub struct CpuMeter {
    last: Option<(std::time::Instant, f64)>,
}

impl CpuMeter {
    /// Percentage of one core used by the calling thread since the last call
    /// (0 on the first call or where the platform does not tell).
    pub fn sample(&mut self) -> f64 {
        self.sample_from(thread_cpu_seconds())
    }

    /// Percentage of one core since the last call, given the CPU seconds
    /// consumed so far by whatever is measured.
    pub fn sample_from(&mut self, cpu_seconds: Option<f64>) -> f64 {
        let now = std::time::Instant::now();
        let Some(cpu) = cpu_seconds else {
            return 0.0;
        };
        let percent = match self.last {
            Some((then, before)) => {
                let wall = now.duration_since(then).as_secs_f64();
                if wall > 0.0 {
                    ((cpu - before) / wall * 100.0).max(0.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, cpu));
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let mut x = 0u64;
            for i in 0..5_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(x != 1);
            assert!(thread_cpu_seconds().is_some());
        }
    }

    #[test]
    fn stat_lines_with_odd_thread_names_parse() {
        let line = "4242 (actix-server (1)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(
            stat_cpu_seconds_named(line),
            Some(("actix-server (1)", 3.0))
        );
        assert_eq!(stat_cpu_seconds_named("garbage"), None);
    }

    #[test]
    fn child_ids_print_as_users_see_them() {
        assert_eq!(
            ChildId::Datasource(ExchangeId::Simulated).to_string(),
            "simulated"
        );
        assert_eq!(
            serde_json::to_string(&ChildId::Storage).unwrap(),
            "\"storage\""
        );
    }
}
