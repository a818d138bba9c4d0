//! The harness's error type.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness step could not be carried out. Findings about the
/// collector (a lost candle, a leaked thread) are not errors: they are
/// [`Failure`](crate::Failure)s in a storm's report. An error means the
/// harness itself could not go on (or the collector stopped answering).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed or was answered with an error.
    #[error("{0}")]
    Http(String),
    /// The collector answered something the harness did not expect.
    #[error("{0}")]
    Unexpected(String),
    /// A condition did not hold within its timeout.
    #[error("timed out after {:.0} s waiting for {what}", after.as_secs_f64())]
    Timeout {
        /// The condition.
        what: String,
        /// How long the harness waited.
        after: Duration,
    },
    /// The collector exited when it was expected to run.
    #[error("the collector exited ({}) while {during}", describe_exit(status))]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// What the harness was doing.
        during: String,
    },
    /// The database file could not be read or locked.
    #[error("database {}: {source}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`] error for `what`, for `map_err`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }

    /// An [`HarnessError::Database`] error on `path`, for `map_err`.
    pub(crate) fn database(
        path: &std::path::Path,
    ) -> impl FnOnce(rusqlite::Error) -> HarnessError + '_ {
        move |source| HarnessError::Database {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How a process ended, in words: `exit code 0`, `killed by signal 25
/// (SIGXFSZ)`.
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => status.to_string(),
    }
}

/// The usual name of the signals a collector may die of.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGINT => "SIGINT",
        _ => "?",
    }
}
