//! Chaos and soak harness: takes the release `ohlcv-collector` binary
//! through storms and checks what each one cost.
//!
//! The storms, in turn: repeated datasource panics, a stalled datasource
//! thread (three missed heartbeats), dropped streams, a silent stream, a
//! database locked by another process, a full disk (`RLIMIT_FSIZE`),
//! `kill -9` at a random moment and SIGTERM mid-batch. After each one the
//! harness waits for recovery and checks:
//!
//! - the stored candles against the simulated exchange's deterministic
//!   series: every candle between the first and last stored one of each
//!   series present once and exactly the simulator's (lost, duplicated,
//!   differing);
//! - threads, open fds and RSS against their level before the storm:
//!   threads ±2, fds ±2, RSS at most +25 % or +8 MiB, whichever is larger.
//!
//! `--short` (the default) runs every storm once on 6 series at 120
//! updates/s, in two to three minutes. `--soak <minutes>` runs 100 series
//! at 2000 updates/s with a storm every `--gap` seconds (cycling), samples
//! the process every minute, and ends with the samples and the start and
//! end figures.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example chaos                      # short
//! cargo run --release --example chaos -- --soak 60          # an hour
//! cargo run --release --example chaos -- --storms panics,kill-9 --keep
//! ```
//!
//! The exit code is 0 when every check passed, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ohlcv_harness::process::binary_next_to_examples;
use ohlcv_harness::{soak, table, Chaos, Settings, Storm};

/// Longest soak, so that a typo cannot keep the harness busy for weeks.
const MAX_SOAK_MINUTES: u64 = 7 * 24 * 60;

/// Chaos and soak harness for ohlcv-collector.
#[derive(Parser, Debug)]
#[command(name = "chaos")]
struct Options {
    /// Every storm once, each lasting seconds (the default).
    #[arg(long, conflicts_with = "soak")]
    short: bool,

    /// Soak for this many minutes at 2000 updates/s with storms on a
    /// schedule.
    #[arg(long, value_name = "MINUTES")]
    soak: Option<u64>,

    /// The collector binary [default: `ohlcv-collector` next to the
    /// `examples/` directory of this harness, i.e. `target/release/`].
    #[arg(long)]
    binary: Option<PathBuf>,

    /// The storms, comma-separated, in order (soak: cycled) [default: all:
    /// panics,stall,drops,silence,db-locked,disk-full,kill-9,sigterm].
    #[arg(long, value_delimiter = ',')]
    storms: Option<Vec<Storm>>,

    /// Soak: seconds of calm before each storm. A minute lets the
    /// supervisor's backoff and restart-intensity window settle.
    #[arg(long, default_value_t = 60)]
    gap: u64,

    /// Soak: seconds between two samples of the process.
    #[arg(long, default_value_t = 60)]
    sample_every: u64,

    /// Seed of the harness's random moments (`kill -9`, SIGTERM)
    /// [default: from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,

    /// Keep the temp directory (config, database, backups) and print its
    /// path.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let options = Options::parse();
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the mode asked for; answers whether every check passed.
fn run(options: &Options) -> Result<bool, String> {
    let binary = match &options.binary {
        Some(path) => path.clone(),
        None => binary_next_to_examples().map_err(|e| e.to_string())?,
    };
    if !binary.is_file() {
        return Err(format!(
            "collector binary {} not found; run `cargo build --release` first (or pass --binary)",
            binary.display()
        ));
    }
    let mut settings = match options.soak {
        Some(minutes) if !(1..=MAX_SOAK_MINUTES).contains(&minutes) => {
            return Err(format!("--soak must be 1 to {MAX_SOAK_MINUTES} minutes"));
        }
        Some(_) => Settings::soak(binary),
        None => Settings::short(binary),
    };
    if let Some(storms) = &options.storms {
        if storms.is_empty() {
            return Err("--storms is empty".into());
        }
        settings.storms = storms.clone();
    }
    settings.rng_seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut chaos = Chaos::start(settings).map_err(|e| e.to_string())?;
    if options.keep {
        eprintln!("chaos: keeping {}", chaos.keep_dir().display());
    }
    match options.soak {
        None => {
            let reports = chaos.run_all();
            let finished = chaos.finish();
            println!();
            print!("{}", table(&reports));
            let mut passed = reports.iter().all(|r| r.passed());
            match finished {
                Ok((data, end)) => {
                    println!("end: {end}; final SIGTERM clean");
                    if !data.is_clean() {
                        println!("end: stored candles:\n{data}");
                        passed = false;
                    }
                }
                Err(error) => {
                    println!("end: {error}");
                    passed = false;
                }
            }
            println!("{}", if passed { "PASSED" } else { "FAILED" });
            Ok(passed)
        }
        Some(minutes) => {
            let report = soak(
                chaos,
                Duration::from_secs(minutes * 60),
                Duration::from_secs(options.gap),
                Duration::from_secs(options.sample_every.max(1)),
            );
            println!();
            println!("samples");
            print!("{}", report.samples_table());
            println!();
            println!("storms");
            print!("{}", table(&report.storms));
            println!();
            println!(
                "{:.1} min; start {}; end {}",
                report.duration.as_secs_f64() / 60.0,
                report.start,
                report
                    .end
                    .map_or_else(|| "not measured".into(), |end| end.to_string())
            );
            for problem in &report.problems {
                println!("problem: {problem}");
            }
            println!("{}", if report.passed() { "PASSED" } else { "FAILED" });
            Ok(report.passed())
        }
    }
}
