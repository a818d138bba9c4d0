//! What a storm did to the collector, and the table the CLI and the test
//! print.

use std::fmt;
use std::time::Duration;

use crate::candles::DataCheck;
use crate::resources::Resources;
use crate::settings::Storm;

/// Which kind of check a [`Failure`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The fault did not show within its timeout (the storm tested
    /// nothing), or the harness could not apply it.
    Effect,
    /// The process ended when it should have run on, or a shutdown was
    /// not clean (exit code, unsaved candles).
    Survival,
    /// The collector did not come back: a child not running, the
    /// datasource not streaming, no batch written.
    Recovery,
    /// Candles lost, duplicated or differing from the simulator's.
    Data,
    /// Threads, fds or RSS outside the tolerance after the storm.
    Resources,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Effect => "fault",
            Check::Survival => "survival",
            Check::Recovery => "recovery",
            Check::Data => "data",
            Check::Resources => "resources",
        })
    }
}

/// One failed check, with its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What was checked.
    pub check: Check,
    /// What was found, with the figures.
    pub message: String,
}

/// What one storm did.
#[derive(Debug, Clone)]
pub struct StormReport {
    /// Which storm.
    pub storm: Storm,
    /// From applying the fault to the last measurement.
    pub duration: Duration,
    /// Restarts of the datasource the supervisor made during the storm.
    pub datasource_restarts: u64,
    /// Times the collector process was started again (on purpose or after
    /// it died).
    pub process_restarts: u64,
    /// The stored candles after recovery (the worse of the checks made).
    pub data: Option<DataCheck>,
    /// The process's level the figures after are compared with: the one
    /// before the storm, or for a new process the first process's level
    /// after start-up.
    pub before: Resources,
    /// The level after recovery (when the process could be read).
    pub after: Option<Resources>,
    /// Every failed check.
    pub failures: Vec<Failure>,
    /// What happened, for the reader (timings, limits, log lines).
    pub notes: Vec<String>,
}

impl StormReport {
    pub(crate) fn new(storm: Storm, before: Resources) -> StormReport {
        StormReport {
            storm,
            duration: Duration::ZERO,
            datasource_restarts: 0,
            process_restarts: 0,
            data: None,
            before,
            after: None,
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn fail(&mut self, check: Check, message: impl Into<String>) {
        self.failures.push(Failure {
            check,
            message: message.into(),
        });
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failures of `check`.
    pub fn failures_of(&self, check: Check) -> impl Iterator<Item = &Failure> {
        self.failures.iter().filter(move |f| f.check == check)
    }

    /// `storm [check]: message` for every failure.
    pub fn failure_lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|f| format!("{} [{}]: {}", self.storm, f.check, f.message))
            .collect()
    }
}

/// The table of `reports`: storm | duration | restarts | lost |
/// duplicated | differing | threads | fds | RSS | verdict, then the
/// failures and notes of each storm in full.
pub fn table(reports: &[StormReport]) -> String {
    let header = [
        "storm",
        "duration",
        "restarts",
        "lost",
        "duplicated",
        "differing",
        "threads before→after",
        "fds before→after",
        "RSS MiB before→after",
        "verdict",
    ];
    let rows: Vec<[String; 10]> = reports.iter().map(row).collect();
    let mut out = render(&header.map(String::from), &rows);
    for report in reports {
        for line in report.failure_lines() {
            out.push_str(&format!("  FAIL {line}\n"));
        }
    }
    for report in reports {
        for note in &report.notes {
            out.push_str(&format!("  note {}: {note}\n", report.storm));
        }
    }
    out
}

fn row(report: &StormReport) -> [String; 10] {
    let restarts = match (report.datasource_restarts, report.process_restarts) {
        (d, 0) => d.to_string(),
        (0, p) => format!("process {p}"),
        (d, p) => format!("{d} + process {p}"),
    };
    let count = |f: fn(&DataCheck) -> u64| {
        report
            .data
            .as_ref()
            .map_or_else(|| "?".to_owned(), |d| f(d).to_string())
    };
    let after = report.after;
    let pair = |before: String, after: Option<String>| {
        format!("{before}→{}", after.unwrap_or_else(|| "?".into()))
    };
    let verdict = if report.passed() {
        "ok".to_owned()
    } else {
        let mut checks: Vec<String> = report
            .failures
            .iter()
            .map(|f| f.check.to_string())
            .collect();
        checks.dedup();
        format!("FAIL ({})", checks.join(", "))
    };
    [
        report.storm.to_string(),
        format!("{:.1} s", report.duration.as_secs_f64()),
        restarts,
        count(DataCheck::lost),
        count(DataCheck::duplicated),
        count(DataCheck::differing),
        pair(
            report.before.threads.to_string(),
            after.map(|a| a.threads.to_string()),
        ),
        pair(
            report.before.fds.to_string(),
            after.map(|a| a.fds.to_string()),
        ),
        pair(
            format!("{:.1}", report.before.rss_mib()),
            after.map(|a| format!("{:.1}", a.rss_mib())),
        ),
        verdict,
    ]
}

/// A plain-text table with `|` between left-aligned columns.
pub(crate) fn render<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("{}\n", rule.join("-|-")));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_figures_and_names_failures() {
        let before = Resources {
            threads: 7,
            fds: 33,
            rss_bytes: 22 * crate::resources::MIB,
        };
        let mut report = StormReport::new(Storm::Panics, before);
        report.datasource_restarts = 3;
        report.duration = Duration::from_millis(12_340);
        report.data = Some(DataCheck::default());
        report.after = Some(Resources {
            threads: 10,
            ..before
        });
        report.fail(Check::Resources, "threads 7→10 (tolerance ±2)");
        let mut ok = StormReport::new(Storm::Kill9, before);
        ok.process_restarts = 1;
        let text = table(&[report, ok]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("storm  | duration | restarts "),
            "{text}"
        );
        assert!(
            lines[2].starts_with(
                "panics | 12.3 s   | 3         | 0    | 0          | 0         | 7→10"
            ),
            "{text}"
        );
        assert!(lines[2].ends_with("FAIL (resources)"), "{text}");
        assert!(
            lines[3].contains("process 1") && lines[3].contains("| ?    |"),
            "{text}"
        );
        assert!(lines[3].ends_with("| ok"), "{text}");
        assert_eq!(
            lines[4],
            "  FAIL panics [resources]: threads 7→10 (tolerance ±2)"
        );
    }
}
