//! What a process holds: threads, open files and resident memory, read from
//! `/proc/<pid>/status` and `/proc/<pid>/fd`, and the tolerance a storm's
//! figures are judged with.

use std::fmt;

use crate::HarnessError;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// Threads, open file descriptors and resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// `Threads:` of `/proc/<pid>/status`.
    pub threads: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
    /// `VmRSS:` of `/proc/<pid>/status`, in bytes.
    pub rss_bytes: u64,
}

impl Resources {
    /// The figures of process `pid` now.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when `/proc/<pid>` cannot be read (the process
    /// is gone) or holds no such lines.
    pub fn of(pid: u32) -> Result<Resources, HarnessError> {
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(HarnessError::io(format!("reading {status_path}")))?;
        let field = |name: &str| -> Result<u64, HarnessError> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| HarnessError::Io {
                    what: format!("reading {name} of {status_path}"),
                    source: std::io::ErrorKind::InvalidData.into(),
                })
        };
        let threads = field("Threads:")?;
        let rss_kib = field("VmRSS:")?;
        let fd_path = format!("/proc/{pid}/fd");
        let fds = std::fs::read_dir(&fd_path)
            .map_err(HarnessError::io(format!("listing {fd_path}")))?
            .count() as u64;
        Ok(Resources {
            threads,
            fds,
            rss_bytes: rss_kib * 1024,
        })
    }

    /// RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / MIB as f64
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} threads, {} fds, {:.1} MiB RSS",
            self.threads,
            self.fds,
            self.rss_mib()
        )
    }
}

/// How far a process's figures may be from their level before a storm
/// and still count as recovered.
///
/// The default: **threads ±2, open fds ±2, RSS at most +25 % or +8 MiB,
/// whichever is larger** (RSS may shrink freely). Two threads or fds of
/// slack cover what comes and goes on its own (a connection being closed,
/// a blocking-pool thread); a leak of one thread per restarted datasource
/// shows after three restarts. The RSS allowance covers allocator caches
/// and SQLite's page cache warming up, which grow early and then stay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Threads more or fewer than before.
    pub threads: u64,
    /// Open file descriptors more or fewer than before.
    pub fds: u64,
    /// RSS growth allowed, as a fraction of the level before.
    pub rss_growth: f64,
    /// RSS growth always allowed, in bytes (when larger than the fraction).
    pub rss_slack_bytes: u64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            threads: 2,
            fds: 2,
            rss_growth: 0.25,
            rss_slack_bytes: 8 * MIB,
        }
    }
}

impl Tolerance {
    /// Largest RSS accepted after a storm that started at `before` bytes.
    pub fn rss_limit(&self, before: u64) -> u64 {
        let growth = (before as f64 * self.rss_growth) as u64;
        before + growth.max(self.rss_slack_bytes)
    }

    /// What is out of tolerance in `after` compared with `before`, one
    /// sentence each with the figures; empty when everything is within.
    pub fn violations(&self, before: &Resources, after: &Resources) -> Vec<String> {
        let mut out = Vec::new();
        if before.threads.abs_diff(after.threads) > self.threads {
            out.push(format!(
                "threads {}→{} (tolerance ±{})",
                before.threads, after.threads, self.threads
            ));
        }
        if before.fds.abs_diff(after.fds) > self.fds {
            out.push(format!(
                "fds {}→{} (tolerance ±{})",
                before.fds, after.fds, self.fds
            ));
        }
        let limit = self.rss_limit(before.rss_bytes);
        if after.rss_bytes > limit {
            out.push(format!(
                "RSS {:.1}→{:.1} MiB (limit {:.1} MiB: +{:.0} % or +{:.0} MiB)",
                before.rss_mib(),
                after.rss_mib(),
                limit as f64 / MIB as f64,
                self.rss_growth * 100.0,
                self.rss_slack_bytes as f64 / MIB as f64
            ));
        }
        out
    }

    /// Whether `after` is within tolerance of `before`.
    pub fn accepts(&self, before: &Resources, after: &Resources) -> bool {
        self.violations(before, after).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(threads: u64, fds: u64, rss_mib: u64) -> Resources {
        Resources {
            threads,
            fds,
            rss_bytes: rss_mib * MIB,
        }
    }

    #[test]
    fn reads_this_process() {
        let me = Resources::of(std::process::id()).unwrap();
        assert!(me.threads >= 1 && me.fds >= 3 && me.rss_bytes > 0, "{me}");
    }

    #[test]
    fn a_gone_process_is_an_error() {
        assert!(Resources::of(u32::MAX).is_err());
    }

    #[test]
    fn tolerance_is_two_threads_two_fds_and_the_larger_rss_allowance() {
        let t = Tolerance::default();
        let before = r(10, 30, 20);
        assert!(t.accepts(&before, &r(12, 28, 28)));
        assert_eq!(t.violations(&before, &r(13, 30, 20)).len(), 1);
        assert_eq!(t.violations(&before, &r(10, 33, 20)).len(), 1);
        assert_eq!(t.violations(&before, &r(7, 30, 20)).len(), 1);
        // 20 MiB: +8 MiB beats +25 % (5 MiB).
        assert!(t.accepts(&before, &r(10, 30, 28)));
        assert!(!t.accepts(&before, &r(10, 30, 29)));
        // 100 MiB: +25 % (25 MiB) beats +8 MiB.
        assert!(t.accepts(&r(10, 30, 100), &r(10, 30, 125)));
        assert!(!t.accepts(&r(10, 30, 100), &r(10, 30, 126)));
        // Shrinking is fine.
        assert!(t.accepts(&before, &r(10, 30, 5)));
        let message = t.violations(&before, &r(15, 40, 20)).join("; ");
        assert_eq!(
            message,
            "threads 10→15 (tolerance ±2); fds 30→40 (tolerance ±2)"
        );
    }
}
