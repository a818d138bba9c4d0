//! The run: one collector on a temp directory, taken through storms.
//!
//! Every storm is the same five steps:
//!
//! 1. **apply** the fault (a new `faults` config written to the config
//!    file, then `POST /restart`, which re-reads it and restarts the
//!    simulated datasource; `POST /config` refuses to change faults; or a
//!    lock, a limit, a signal from outside);
//! 2. **wait for its effect**, polling a condition with a timeout
//!    (restarts in `/status` grew, reconnects grew, writes failed);
//! 3. **remove** it (the config without faults, the lock released, the
//!    limit restored, the binary started again);
//! 4. **wait for recovery**: every child `running`, the datasource
//!    `streaming`, and a batch written after that;
//! 5. **measure**: the stored candles against the simulator (polled
//!    until exact or a timeout: a gap being filled is not a loss yet), then
//!    threads, fds and RSS against the level before (polled until within
//!    tolerance or a timeout: a replaced thread ends a moment later).
//!
//! Nothing sleeps to synchronise: the only fixed waits are the faults'
//! own durations (how long a lock is held, the random moment of a kill).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::Status;
use crate::candles::{check_database, DataCheck};
use crate::error::describe_exit;
use crate::faults::{database_sizes, DatabaseLock, FileSizeLimit};
use crate::process::{wait_until, Collector};
use crate::report::{Check, StormReport};
use crate::resources::Resources;
use crate::settings::{Settings, Storm};
use crate::HarnessError;

/// The name of the simulated datasource in `/status`.
const DATASOURCE: &str = "simulated";

/// How often the stored candles are read while waiting for them to be
/// exact; a read of a soak's database takes a fraction of a second.
const DATA_POLL: Duration = Duration::from_millis(500);

/// What a run is doing now, for a sampler on another thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// The collector's current process id.
    pub pid: u32,
    /// The storm in progress, if any.
    pub storm: Option<Storm>,
}

/// A collector in a temp directory and the storms it goes through.
pub struct Chaos {
    settings: Settings,
    dir: tempfile::TempDir,
    collector: Collector,
    /// The first process's level after start-up: what a new process is
    /// compared with.
    baseline: Resources,
    /// The level after the last storm: what the next one is compared with.
    level: Resources,
    rng: fastrand::Rng,
    activity: Arc<Mutex<Activity>>,
}

impl Chaos {
    /// Writes the config to a new temp directory, starts the collector and
    /// waits for it to stream and write, and takes its level.
    ///
    /// # Errors
    /// Any [`HarnessError`]: without a running collector there is no run.
    pub fn start(settings: Settings) -> Result<Chaos, HarnessError> {
        let dir = tempfile::tempdir().map_err(HarnessError::io("creating a temp dir"))?;
        write_config(dir.path(), &settings.config())?;
        progress(format!(
            "starting {} ({} series × {}/s = {}/s, batches every {} ms, seed {}, harness seed {})",
            settings.binary.display(),
            settings.series().len(),
            settings.updates_per_second,
            settings.total_updates_per_second(),
            settings.batch_interval_ms,
            settings.seed,
            settings.rng_seed
        ));
        let collector = Collector::start(&settings.binary, dir.path(), settings.startup_timeout)?;
        let activity = Arc::new(Mutex::new(Activity {
            pid: collector.pid(),
            storm: None,
        }));
        let placeholder = collector.resources()?;
        let mut chaos = Chaos {
            rng: fastrand::Rng::with_seed(settings.rng_seed),
            settings,
            dir,
            collector,
            baseline: placeholder,
            level: placeholder,
            activity,
        };
        chaos.wait_recovered()?;
        let data = chaos.wait_data_exact()?;
        if !data.is_clean() {
            return Err(HarnessError::Unexpected(format!(
                "the stored candles are not the simulator's right after start-up:\n{data}"
            )));
        }
        chaos.baseline = chaos.collector.resources()?;
        chaos.level = chaos.baseline;
        progress(format!("streaming; level {}", chaos.baseline));
        Ok(chaos)
    }

    /// The settings of the run.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The temp directory with the config and the database.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Keeps the temp directory when the run ends (for a post-mortem)
    /// and answers its path.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_path_buf()
    }

    /// The first process's level after start-up.
    pub fn baseline(&self) -> Resources {
        self.baseline
    }

    /// The collector's process id and the storm in progress, shared.
    pub fn activity(&self) -> Arc<Mutex<Activity>> {
        self.activity.clone()
    }

    /// The collector's figures now, if it runs.
    pub fn resources(&self) -> Option<Resources> {
        self.collector.resources().ok()
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("data/ohlcv.db")
    }

    fn set_activity(&self, storm: Option<Storm>) {
        let mut activity = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
        activity.pid = self.collector.pid();
        activity.storm = storm;
    }

    /// Runs every storm of the settings in order.
    pub fn run_all(&mut self) -> Vec<StormReport> {
        let storms = self.settings.storms.clone();
        storms.into_iter().map(|storm| self.run(storm)).collect()
    }

    /// Runs one storm: apply, effect, remove, recovery, measures. Never
    /// fails: what goes wrong is a failure in the report, and a collector
    /// that died is started again so that the run can go on.
    pub fn run(&mut self, storm: Storm) -> StormReport {
        progress(format!("{storm}: starting"));
        self.set_activity(Some(storm));
        let started = Instant::now();
        let before = if storm.replaces_process() {
            self.baseline
        } else {
            self.level
        };
        let mut report = StormReport::new(storm, before);
        let restarts_before = self.restarts().unwrap_or(0);
        let pid_before = self.collector.pid();

        if let Err(error) = self.storm(storm, &mut report) {
            match error {
                HarnessError::Exited { status, .. } => report.fail(
                    Check::Survival,
                    format!("the collector died: {}", describe_exit(&status)),
                ),
                other => report.fail(Check::Effect, other.to_string()),
            }
        }
        if self.collector.pid() == pid_before {
            report.datasource_restarts = self
                .restarts()
                .unwrap_or(restarts_before)
                .saturating_sub(restarts_before);
        }
        // A collector that died on its own is started again, so that the
        // data it left can be checked and the run can go on.
        if let Ok(Some(status)) = self.collector.exit_status() {
            // (A storm that ends the process on purpose starts it again
            // itself; if it is still down, that start failed.)
            if !storm.replaces_process() && report.failures_of(Check::Survival).next().is_none() {
                report.fail(
                    Check::Survival,
                    format!("the collector died: {}", describe_exit(&status)),
                );
            }
            report.before = self.baseline;
            if let Err(error) = self.restart(&mut report) {
                report.fail(
                    Check::Recovery,
                    format!("could not start it again: {error}"),
                );
            }
        }
        self.measure(&mut report);
        report.duration = started.elapsed();
        self.set_activity(None);
        progress(format!(
            "{storm}: {} in {:.1} s",
            if report.passed() { "ok" } else { "FAILED" },
            report.duration.as_secs_f64()
        ));
        for line in report.failure_lines() {
            progress(format!("  {line}"));
        }
        report
    }

    /// Waits `duration` between storms, watching that the collector stays
    /// up. A death is reported (and the collector started again).
    ///
    /// # Errors
    /// [`HarnessError::Exited`] when it died (it then runs again), or an
    /// error starting it again.
    pub fn calm(&mut self, duration: Duration) -> Result<(), HarnessError> {
        let result = self.hold(Instant::now() + duration, "calm between storms");
        if let Err(HarnessError::Exited { status, during }) = result {
            self.start_again()?;
            self.wait_recovered()?;
            return Err(HarnessError::Exited { status, during });
        }
        result
    }

    /// Stops the collector with SIGTERM and answers the exit, after a
    /// last check of the stored candles.
    ///
    /// # Errors
    /// When the collector does not stop in time or its exit is not clean
    /// (code 0 with every queued candle saved).
    pub fn finish(mut self) -> Result<(DataCheck, Resources), HarnessError> {
        self.wait_recovered()?;
        let data = self.wait_data_exact()?;
        let end = self.collector.resources()?;
        let status = self
            .collector
            .stop_with(libc::SIGTERM, self.settings.shutdown_timeout)?;
        if status.code() != Some(0) || !self.collector.log_contains("every queued candle saved") {
            return Err(HarnessError::Unexpected(format!(
                "the final shutdown was not clean: {}; last log lines:\n{}",
                describe_exit(&status),
                self.collector.log_tail(10).join("\n")
            )));
        }
        Ok((data.worst(self.check_data()?), end))
    }

    // ---------------------------------------------------------------
    // The storms

    fn storm(&mut self, storm: Storm, report: &mut StormReport) -> Result<(), HarnessError> {
        match storm {
            Storm::Panics => self.panics(report),
            Storm::Stall => self.stall(report),
            Storm::Drops => self.drops(),
            Storm::Silence => self.silence(),
            Storm::DatabaseLocked => self.database_locked(),
            Storm::DiskFull => self.disk_full(report),
            Storm::Kill9 => self.kill9(report),
            Storm::Sigterm => self.sigterm(report),
        }
    }

    fn panics(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        let start = self.restarts()?;
        let wanted = start + self.settings.panics;
        self.apply(json!({
            "panic_after_updates": self.settings.fault_after_updates,
            "repeat": true
        }))?;
        let status = self.wait_status(
            &format!("{} datasource restarts", self.settings.panics),
            self.settings.effect_timeout,
            |status| status.restarts(DATASOURCE) >= wanted,
        )?;
        note_error(report, &status);
        self.apply(json!({}))
    }

    fn stall(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        let start = self.restarts()?;
        self.apply(json!({
            "block_after_updates": self.settings.fault_after_updates,
            "block_ms": self.settings.block_ms
        }))?;
        let status = self.wait_status(
            "the stalled datasource to be replaced",
            self.settings.effect_timeout + Duration::from_millis(self.settings.block_ms),
            |status| status.restarts(DATASOURCE) > start,
        )?;
        note_error(report, &status);
        self.apply(json!({}))
    }

    fn drops(&mut self) -> Result<(), HarnessError> {
        self.apply(json!({
            "drop_stream_after_updates": self.settings.fault_after_updates,
            "repeat": true
        }))?;
        let wanted = self.settings.drops;
        self.wait_status(
            &format!("{wanted} reconnects"),
            self.settings.effect_timeout,
            |status| {
                status
                    .datasource(DATASOURCE)
                    .is_some_and(|m| m.reconnects >= wanted)
            },
        )?;
        self.apply(json!({}))
    }

    fn silence(&mut self) -> Result<(), HarnessError> {
        self.apply(json!({ "silence_after_updates": self.settings.fault_after_updates }))?;
        self.wait_status(
            "a reconnect of the silent stream",
            self.settings.effect_timeout,
            |status| {
                status
                    .datasource(DATASOURCE)
                    .is_some_and(|m| m.reconnects >= 1)
            },
        )?;
        self.apply(json!({}))
    }

    fn database_locked(&mut self) -> Result<(), HarnessError> {
        let failed = self.failed_flushes()?;
        let lock = DatabaseLock::acquire(&self.database())?;
        let until = Instant::now() + self.settings.hold;
        let effect = self.wait_status(
            "a write refused on the locked database",
            self.settings.effect_timeout,
            |status| {
                status
                    .storage()
                    .is_some_and(|m| m.stats.failed_flushes > failed)
            },
        );
        let held = effect.and_then(|_| self.hold(until, "holding the database lock"));
        let released = lock.release();
        held.and(released)
    }

    fn disk_full(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        let (main, wal) = database_sizes(&self.database())?;
        // Not "a little above the files' sizes": the WAL reuses its space
        // from the start after each checkpoint and checkpoints rewrite the
        // database in place, so such a limit may never be reached. Below
        // the offsets every batch reaches, the next one fails.
        let limit = self.settings.disk_limit_bytes;
        report.notes.push(format!(
            "RLIMIT_FSIZE set to {limit} bytes (database {main} bytes, WAL {wal} bytes)"
        ));
        let failed = self.failed_flushes()?;
        let limited = FileSizeLimit::set(self.collector.pid(), limit)?;
        let until = Instant::now() + self.settings.hold;
        let effect = self.wait_status(
            "a write refused on the full disk",
            self.settings.effect_timeout,
            |status| {
                status
                    .storage()
                    .is_some_and(|m| m.stats.failed_flushes > failed)
            },
        );
        let held = effect.and_then(|_| self.hold(until, "holding the file-size limit"));
        if self.collector.exit_status()?.is_none() {
            limited.restore()?;
        }
        held
    }

    fn kill9(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        // Anywhere in two batch intervals: before, during or after a write.
        let delay = Duration::from_millis(self.rng.u64(0..=2 * self.settings.batch_interval_ms));
        report.notes.push(format!(
            "SIGKILL {} ms into a streaming run",
            delay.as_millis()
        ));
        self.hold(Instant::now() + delay, "waiting for the moment to kill")?;
        self.collector.signal(libc::SIGKILL)?;
        self.collector.wait_exit(self.settings.shutdown_timeout)?;
        self.restart(report)
    }

    fn sigterm(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        let rate = self.settings.sigterm_updates_per_second;
        let config =
            self.settings
                .config_with(json!({}), rate, self.settings.sigterm_batch_interval_ms);
        self.apply_config(&config)?;
        // A second of updates at the high rate, so that batches are full.
        let wanted = (rate * self.settings.series().len() as f64) as u64;
        self.wait_status(
            &format!("{wanted} updates at {rate}/s per series"),
            self.settings.effect_timeout,
            |status| {
                status
                    .datasource(DATASOURCE)
                    .is_some_and(|m| m.state == "streaming" && m.updates >= wanted)
            },
        )?;
        let delay = Duration::from_millis(self.rng.u64(0..self.settings.sigterm_batch_interval_ms));
        report.notes.push(format!(
            "SIGTERM {} ms into a batch interval of {} ms at {}/s",
            delay.as_millis(),
            self.settings.sigterm_batch_interval_ms,
            rate * self.settings.series().len() as f64
        ));
        self.hold(
            Instant::now() + delay,
            "waiting for the moment to terminate",
        )?;
        let started = Instant::now();
        let status = self
            .collector
            .stop_with(libc::SIGTERM, self.settings.shutdown_timeout)?;
        report.notes.push(format!(
            "exited {:.0} ms after SIGTERM: {}",
            started.elapsed().as_secs_f64() * 1000.0,
            describe_exit(&status)
        ));
        if status.code() != Some(0) {
            report.fail(
                Check::Survival,
                format!("SIGTERM: {}, expected exit code 0", describe_exit(&status)),
            );
        }
        if !self.collector.log_contains("every queued candle saved") {
            report.fail(
                Check::Survival,
                "SIGTERM: the log does not say that every queued candle was saved",
            );
        }
        // What the shutdown left, before a restart fills anything in.
        report.data = Some(self.check_data()?);
        self.restart(report)
    }

    // ---------------------------------------------------------------
    // Steps

    /// Starts the binary again on the same directory with the config
    /// between storms.
    fn restart(&mut self, report: &mut StormReport) -> Result<(), HarnessError> {
        self.start_again()?;
        report.process_restarts += 1;
        Ok(())
    }

    fn start_again(&mut self) -> Result<(), HarnessError> {
        write_config(self.dir.path(), &self.settings.config())?;
        self.collector = Collector::start(
            &self.settings.binary,
            self.dir.path(),
            self.settings.startup_timeout,
        )?;
        let mut activity = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
        activity.pid = self.collector.pid();
        Ok(())
    }

    /// Recovery, the stored candles, then the resources.
    fn measure(&mut self, report: &mut StormReport) {
        if let Err(error) = self.wait_recovered() {
            report.fail(Check::Recovery, error.to_string());
            report.notes.push(format!(
                "last log lines: {}",
                self.collector.log_tail(5).join(" / ")
            ));
        }
        match self.wait_data_exact() {
            Ok(data) => {
                let data = match report.data.take() {
                    Some(earlier) => earlier.worst(data),
                    None => data,
                };
                if !data.is_clean() {
                    report.fail(
                        Check::Data,
                        format!(
                            "{} lost, {} duplicated, {} differing of {} rows:\n{}",
                            data.lost(),
                            data.duplicated(),
                            data.differing(),
                            data.rows(),
                            data.to_string().trim_end()
                        ),
                    );
                }
                report.data = Some(data);
            }
            Err(error) => report.fail(Check::Data, format!("candles not checked: {error}")),
        }
        match self.settle(&report.before) {
            Ok(after) => {
                let violations = self.settings.tolerance.violations(&report.before, &after);
                if !violations.is_empty() {
                    report.fail(Check::Resources, violations.join("; "));
                }
                report.after = Some(after);
                self.level = after;
            }
            Err(error) => report.fail(Check::Resources, format!("not measured: {error}")),
        }
    }

    /// Applies the config between storms with `faults`.
    fn apply(&mut self, faults: Value) -> Result<(), HarnessError> {
        let config = self.settings.faulty_config(faults);
        self.apply_config(&config)
    }

    /// Writes `config` into the collector's config file and `POST
    /// /restart`s it, expecting the datasource to be restarted with it.
    /// Not `POST /config`: that refuses to change faults, which only the
    /// file may set.
    fn apply_config(&mut self, config: &Value) -> Result<(), HarnessError> {
        self.collector.ensure_running("applying a config")?;
        write_config(self.dir.path(), config)?;
        let applied = self.collector.api().restart();
        self.collector.ensure_running("applying a config")?;
        let applied = applied?;
        // A restart stops and starts every enabled datasource again, and
        // lists each as reloaded.
        let reloaded = applied["reloaded"]
            .as_array()
            .is_some_and(|list| list.iter().any(|e| e == DATASOURCE));
        if reloaded {
            Ok(())
        } else {
            Err(HarnessError::Unexpected(format!(
                "POST /restart did not restart the {DATASOURCE} datasource: {applied}"
            )))
        }
    }

    /// Polls `/status` until `done` holds; a request that fails while the
    /// process runs is tried again.
    fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status, HarnessError> {
        let collector = &mut self.collector;
        wait_until(what, timeout, || {
            collector.ensure_running(what)?;
            Ok(collector.api().status().ok().filter(|status| done(status)))
        })
    }

    /// Every child running, the datasource streaming, no write error, then
    /// a batch written after that was seen.
    fn wait_recovered(&mut self) -> Result<(), HarnessError> {
        let timeout = self.settings.recovery_timeout;
        let seen = self.wait_status(
            "every child running and the datasource streaming",
            timeout,
            |status| {
                status.all_running()
                    && status
                        .datasource(DATASOURCE)
                        .is_some_and(|m| m.state == "streaming" && m.updates > 0)
                    && status
                        .storage()
                        .is_some_and(|m| m.stats.last_error.is_none())
            },
        )?;
        let heartbeat = seen.child("storage")["last_heartbeat"]
            .as_i64()
            .unwrap_or(0);
        let flushes = seen.storage().map_or(0, |m| m.stats.flushes);
        self.wait_status("a batch written after recovery", timeout, |status| {
            status.child("storage")["last_heartbeat"]
                .as_i64()
                .unwrap_or(0)
                > heartbeat
                && status
                    .storage()
                    .is_some_and(|m| m.stats.flushes > flushes && m.stats.last_error.is_none())
        })?;
        Ok(())
    }

    /// The stored candles, read until exact or the data timeout.
    fn wait_data_exact(&mut self) -> Result<DataCheck, HarnessError> {
        let started = Instant::now();
        loop {
            let check = self.check_data()?;
            if check.is_clean() || started.elapsed() >= self.settings.data_timeout {
                return Ok(check);
            }
            std::thread::sleep(DATA_POLL);
        }
    }

    fn check_data(&self) -> Result<DataCheck, HarnessError> {
        check_database(
            &self.database(),
            self.settings.seed,
            &self.settings.series(),
        )
    }

    /// The figures, read until within tolerance of `before` or the settle
    /// timeout.
    fn settle(&mut self, before: &Resources) -> Result<Resources, HarnessError> {
        let tolerance = self.settings.tolerance;
        let mut last = None;
        let result = wait_until(
            "threads, fds and RSS within tolerance",
            self.settings.settle_timeout,
            || {
                let now = self.collector.resources()?;
                last = Some(now);
                Ok(tolerance.accepts(before, &now).then_some(now))
            },
        );
        match (result, last) {
            (Ok(now), _) => Ok(now),
            (Err(HarnessError::Timeout { .. }), Some(last)) => Ok(last),
            (Err(error), _) => Err(error),
        }
    }

    /// Waits until `until` (a fault's own duration), failing as soon as
    /// the collector exits.
    fn hold(&mut self, until: Instant, during: &str) -> Result<(), HarnessError> {
        let timeout = until.saturating_duration_since(Instant::now());
        let collector = &mut self.collector;
        match wait_until(during, timeout, || {
            collector.ensure_running(during)?;
            Ok(None::<()>)
        }) {
            Err(HarnessError::Timeout { .. }) => Ok(()),
            other => other,
        }
    }

    fn restarts(&mut self) -> Result<u64, HarnessError> {
        self.collector.ensure_running("reading /status")?;
        Ok(self.collector.api().status()?.restarts(DATASOURCE))
    }

    fn failed_flushes(&mut self) -> Result<u64, HarnessError> {
        self.collector.ensure_running("reading /status")?;
        let status = self.collector.api().status()?;
        Ok(status.storage().map_or(0, |m| m.stats.failed_flushes))
    }
}

/// Notes the datasource's last error from `status`.
fn note_error(report: &mut StormReport, status: &Status) {
    if let Some(error) = status.child(DATASOURCE)["last_error"].as_str() {
        report.notes.push(format!("last datasource error: {error}"));
    }
}

fn write_config(dir: &std::path::Path, config: &Value) -> Result<(), HarnessError> {
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config).expect("a JSON value serialises");
    std::fs::write(&path, text).map_err(HarnessError::io(format!("writing {}", path.display())))
}

/// One line of progress on stderr.
fn progress(line: String) {
    eprintln!("chaos: {line}");
}
