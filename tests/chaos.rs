//! The chaos harness's short run against the binary cargo built: every
//! storm once (panics, a stall, dropped and silent streams, a locked
//! database, a full disk, `kill -9`, SIGTERM mid-batch), each followed by
//! the check that no candle was lost, duplicated or changed and that
//! threads, fds and RSS came back within tolerance (threads ±2, fds ±2,
//! RSS +25 % or +8 MiB, whichever is larger).
//!
//! One test, so that the storms run one after another on one collector
//! (as they would in production) and the whole table is printed; every
//! failed check is listed with its storm and figures.

use std::path::PathBuf;

use ohlcv_harness::{table, Chaos, Check, Settings};

#[test]
fn storms_lose_no_candle_and_leak_nothing() {
    let settings = Settings::short(PathBuf::from(env!("CARGO_BIN_EXE_ohlcv-collector")));
    let mut chaos = Chaos::start(settings).expect("the collector starts and streams");
    let reports = chaos.run_all();
    let finished = chaos.finish();
    let printed = table(&reports);

    let lines = |checks: &[Check]| -> Vec<String> {
        reports
            .iter()
            .flat_map(|report| {
                report
                    .failures
                    .iter()
                    .filter(|f| checks.contains(&f.check))
                    .map(|f| format!("{} [{}]: {}", report.storm, f.check, f.message))
            })
            .collect()
    };
    let behaviour = lines(&[Check::Effect, Check::Survival, Check::Recovery, Check::Data]);
    let resources = lines(&[Check::Resources]);
    let mut problems = Vec::new();
    if !behaviour.is_empty() {
        problems.push(format!(
            "survival, recovery or candles:\n  {}",
            behaviour.join("\n  ")
        ));
    }
    if !resources.is_empty() {
        problems.push(format!(
            "RESOURCES out of tolerance (threads ±2, fds ±2, RSS +25 % or +8 MiB):\n  {}",
            resources.join("\n  ")
        ));
    }
    match finished {
        Ok((data, _)) if !data.is_clean() => {
            problems.push(format!("at the end, the stored candles:\n{data}"));
        }
        Ok(_) => {}
        Err(error) => problems.push(format!("the final shutdown: {error}")),
    }
    // The table is in the failure message; a passing run shows it with
    // `--nocapture`.
    println!("{printed}");
    assert!(
        problems.is_empty(),
        "{}\n\n{printed}",
        problems.join("\n\n")
    );
}
