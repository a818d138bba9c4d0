//! The collector process: start it on a directory, read its address, watch
//! its exit, stop it with the signal a storm calls for.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::resources::Resources;
use crate::HarnessError;

/// How often [`wait_until`] checks its condition: short enough that a
/// storm's timings are not blurred, long enough not to load the machine.
const POLL_PERIOD: Duration = Duration::from_millis(100);

/// Polls `check` until it answers `Some`, for at most `timeout`.
///
/// This waits on a condition; it never sleeps for synchronisation.
///
/// # Errors
/// The first error `check` returns, or [`HarnessError::Timeout`] naming
/// `what`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, HarnessError>,
) -> Result<T, HarnessError> {
    let started = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: started.elapsed(),
            });
        }
        std::thread::sleep(POLL_PERIOD);
    }
}

/// A running `ohlcv-collector run --config <dir>/config.json`; killed on
/// drop if it is still running.
pub struct Collector {
    child: Child,
    addr: SocketAddr,
    api: Api,
    log: Arc<LogTail>,
    exit: Option<ExitStatus>,
}

impl Collector {
    /// Starts `binary` on the `config.json` in `dir` and waits (at most
    /// `timeout`) for its `listening on http://ADDR` line on stdout.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when it cannot be started,
    /// [`HarnessError::Exited`] when it exits at start (a refused config),
    /// [`HarnessError::Timeout`] when it prints no address in time.
    pub fn start(binary: &Path, dir: &Path, timeout: Duration) -> Result<Collector, HarnessError> {
        let mut child = Command::new(binary)
            .args(["run", "--log-format", "json", "--config"])
            .arg(dir.join("config.json"))
            .env("RUST_LOG", "info")
            // Pinned, so that the figures do not depend on the shell: with
            // backtraces on, the first panic makes the default hook load
            // and keep the binary's debug info (over 100 MiB of RSS for a
            // debug build), a step that would hide the leaks measured here.
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io(format!("starting {}", binary.display())))?;
        let log = Arc::new(LogTail::default());
        let err = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let sink = log.clone();
        std::thread::spawn(move || sink.drain(err));
        let (tx, rx) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        // Keeps reading after the address so that the pipe never fills.
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                line.clear();
            }
        });
        let mut collector = Collector {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api: Api::new(SocketAddr::from(([127, 0, 0, 1], 0))),
            log,
            exit: None,
        };
        let addr = wait_until("the collector's address on stdout", timeout, || {
            collector.ensure_running("starting")?;
            match rx.try_recv() {
                Ok(Ok(addr)) => Ok(Some(addr)),
                Ok(Err(e)) => Err(HarnessError::Unexpected(format!(
                    "unreadable address on stdout: {e}"
                ))),
                Err(_) => Ok(None),
            }
        })?;
        collector.addr = addr;
        collector.api = Api::new(addr);
        Ok(collector)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client of its HTTP API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// How it ended, if it has.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when its status cannot be read.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .map_err(HarnessError::io("reading the collector's status"))?;
        }
        Ok(self.exit)
    }

    /// Fails with [`HarnessError::Exited`] if the process has ended.
    ///
    /// # Errors
    /// As said, or [`HarnessError::Io`].
    pub fn ensure_running(&mut self, during: &str) -> Result<(), HarnessError> {
        match self.exit_status()? {
            Some(status) => Err(HarnessError::Exited {
                status,
                during: during.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Its thread count, open files and resident memory now.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when `/proc` cannot be read (it has exited).
    pub fn resources(&self) -> Result<Resources, HarnessError> {
        Resources::of(self.pid())
    }

    /// Sends `signal` to the process.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when it cannot be sent.
    pub fn signal(&self, signal: i32) -> Result<(), HarnessError> {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        if unsafe { libc::kill(pid, signal) } == 0 {
            Ok(())
        } else {
            Err(HarnessError::Io {
                what: format!("sending signal {signal} to {pid}"),
                source: std::io::Error::last_os_error(),
            })
        }
    }

    /// Sends `signal` and waits at most `timeout` for the exit. A process
    /// still running then is killed and reported as a timeout.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] (the process is then killed) or
    /// [`HarnessError::Io`].
    pub fn stop_with(
        &mut self,
        signal: i32,
        timeout: Duration,
    ) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.exit_status()? {
            return Ok(status);
        }
        self.signal(signal)?;
        let result = wait_until("the collector to exit", timeout, || self.exit_status());
        if result.is_err() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        result
    }

    /// Waits at most `timeout` for a process that is ending anyway.
    ///
    /// # Errors
    /// As [`Collector::stop_with`].
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        wait_until("the collector to exit", timeout, || self.exit_status())
    }

    /// The last lines it wrote to stderr (JSON log lines).
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        let tail = self.log.lines();
        tail[tail.len().saturating_sub(lines)..].to_vec()
    }

    /// Whether one of the last 2000 log lines contains `text`.
    pub fn log_contains(&self, text: &str) -> bool {
        self.log.lines().iter().any(|line| line.contains(text))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines of the collector's stderr.
#[derive(Default)]
struct LogTail {
    lines: Mutex<VecDeque<String>>,
}

impl LogTail {
    /// Lines kept: enough for the shutdown sequence and a failure report;
    /// a panic's backtrace alone can take a hundred.
    const KEEP: usize = 2000;

    fn drain(&self, mut input: impl BufRead) {
        let mut line = String::new();
        while input.read_line(&mut line).unwrap_or(0) > 0 {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.len() == Self::KEEP {
                lines.pop_front();
            }
            lines.push_back(line.trim_end().to_owned());
            line.clear();
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// `ohlcv-collector` in the directory above the running executable's own
/// (`target/release/examples/chaos` → `target/release/ohlcv-collector`).
///
/// # Errors
/// [`HarnessError::Io`] when the executable's path is unknown.
pub fn binary_next_to_examples() -> Result<PathBuf, HarnessError> {
    let me = std::env::current_exe().map_err(HarnessError::io("locating this executable"))?;
    let dir = me.parent().and_then(Path::parent).ok_or_else(|| {
        HarnessError::Unexpected(format!("{} has no grandparent directory", me.display()))
    })?;
    Ok(dir.join(format!("ohlcv-collector{}", std::env::consts::EXE_SUFFIX)))
}
