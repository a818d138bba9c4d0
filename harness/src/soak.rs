//! The soak: a long run at a steady load with the storms firing on a
//! schedule, the process sampled every minute.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::candles::DataCheck;
use crate::report::{render, StormReport};
use crate::resources::Resources;
use crate::runner::{Activity, Chaos};
use crate::settings::Storm;

/// One sample of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Time since the soak started.
    pub at: Duration,
    /// The collector's process id then (it changes at `kill-9` and
    /// `sigterm`).
    pub pid: u32,
    /// Its figures (`None` when it was between two processes).
    pub resources: Option<Resources>,
    /// The storm in progress then, if any.
    pub storm: Option<Storm>,
}

/// What a soak found.
#[derive(Debug)]
pub struct SoakReport {
    /// How long it ran.
    pub duration: Duration,
    /// Every storm, in order.
    pub storms: Vec<StormReport>,
    /// The process every `sample_every`, from start to end.
    pub samples: Vec<Sample>,
    /// The level after start-up.
    pub start: Resources,
    /// The level at the end (before the final SIGTERM).
    pub end: Option<Resources>,
    /// The stored candles at the end.
    pub data: Option<DataCheck>,
    /// Problems outside the storms: deaths between storms, an end level
    /// out of tolerance of the start, an unclean final shutdown.
    pub problems: Vec<String>,
}

impl SoakReport {
    /// Whether every storm passed and nothing else went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.storms.iter().all(StormReport::passed)
    }

    /// The samples as a table: minute | pid | threads | fds | RSS | storm.
    pub fn samples_table(&self) -> String {
        let header = [
            "minute",
            "pid",
            "threads",
            "fds",
            "RSS MiB",
            "storm in progress",
        ]
        .map(String::from);
        let rows: Vec<[String; 6]> = self
            .samples
            .iter()
            .map(|s| {
                let (threads, fds, rss) = match s.resources {
                    Some(r) => (
                        r.threads.to_string(),
                        r.fds.to_string(),
                        format!("{:.1}", r.rss_mib()),
                    ),
                    None => ("?".into(), "?".into(), "?".into()),
                };
                [
                    format!("{:.1}", s.at.as_secs_f64() / 60.0),
                    s.pid.to_string(),
                    threads,
                    fds,
                    rss,
                    s.storm.map_or_else(String::new, |storm| storm.to_string()),
                ]
            })
            .collect();
        render(&header, &rows)
    }
}

/// Runs `chaos` for `duration`: `gap` of calm, then the next storm of its
/// settings (cycling), again and again; a sample every `sample_every`;
/// then a last check of the candles, the end level against the start
/// level, and a SIGTERM that must be clean.
pub fn soak(
    mut chaos: Chaos,
    duration: Duration,
    gap: Duration,
    sample_every: Duration,
) -> SoakReport {
    let started = Instant::now();
    let start = chaos.baseline();
    let tolerance = chaos.settings().tolerance;
    let sampler = Sampler::start(chaos.activity(), sample_every, started);
    let mut storms = Vec::new();
    let mut problems = Vec::new();
    let cycle = chaos.settings().storms.clone();
    let mut next = cycle.iter().copied().cycle();
    while started.elapsed() < duration {
        let calm = gap.min(duration.saturating_sub(started.elapsed()));
        if let Err(error) = chaos.calm(calm) {
            problems.push(format!(
                "between storms, {:.1} min in: {error}",
                started.elapsed().as_secs_f64() / 60.0
            ));
        }
        if started.elapsed() >= duration {
            break;
        }
        match next.next() {
            Some(storm) => storms.push(chaos.run(storm)),
            None => break,
        }
    }
    let end_sample = chaos.resources();
    let end_pid = chaos
        .activity()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pid;
    let finished = chaos.finish();
    let samples = sampler.stop(end_pid, end_sample, started);
    let (data, end) = match finished {
        Ok((data, end)) => {
            if !data.is_clean() {
                problems.push(format!(
                    "at the end: {} lost, {} duplicated, {} differing",
                    data.lost(),
                    data.duplicated(),
                    data.differing()
                ));
            }
            let violations = tolerance.violations(&start, &end);
            if !violations.is_empty() {
                problems.push(format!("end against start: {}", violations.join("; ")));
            }
            (Some(data), Some(end))
        }
        Err(error) => {
            problems.push(format!("at the end: {error}"));
            (None, end_sample)
        }
    };
    SoakReport {
        duration: started.elapsed(),
        storms,
        samples,
        start,
        end,
        data,
        problems,
    }
}

/// A thread that samples the current collector process on a schedule.
struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Sampler {
    fn start(activity: Arc<Mutex<Activity>>, every: Duration, started: Instant) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            loop {
                let Activity { pid, storm } =
                    *activity.lock().unwrap_or_else(PoisonError::into_inner);
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Sample {
                        at: started.elapsed(),
                        pid,
                        resources: Resources::of(pid).ok(),
                        storm,
                    });
                next += every;
                // The schedule, not a synchronisation: the stop message
                // ends the wait at once.
                match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        });
        Sampler {
            stop,
            thread,
            samples,
        }
    }

    /// Stops the thread and adds the end sample.
    fn stop(self, pid: u32, end: Option<Resources>, started: Instant) -> Vec<Sample> {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some(resources) = end {
            samples.push(Sample {
                at: started.elapsed(),
                pid,
                resources: Some(resources),
                storm: None,
            });
        }
        samples
    }
}
