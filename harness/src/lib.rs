//! Chaos and soak harness of ohlcv-collector.
//!
//! It runs the real binary on a temp directory against the simulated
//! exchange and takes it through *storms*: repeated datasource panics, a
//! stalled datasource thread, dropped and silent streams, a database locked
//! by another process, a full disk, `kill -9` and SIGTERM mid-batch (see
//! [`Storm`]). After each storm it checks, against the simulator's
//! deterministic series, that no candle was lost, duplicated or changed
//! ([`check_database`]), and that the process's threads, open files and
//! RSS came back to their level before ([`Tolerance`]: threads ±2, fds ±2,
//! RSS +25 % or +8 MiB, whichever is larger).
//!
//! - [`process`]: start and stop the binary, read its address;
//! - [`api`]: the HTTP routes the harness uses;
//! - [`resources`]: `/proc/<pid>` figures and the tolerance;
//! - [`candles`]: the stored candles against the simulator;
//! - [`faults`]: the faults caused from outside (a lock, a file-size limit);
//! - [`settings`]: the storms and the two presets, short and soak;
//! - [`runner`]: one run, storm after storm ([`Chaos`]);
//! - [`report`]: what a storm did, and the table;
//! - [`mod@soak`]: the long run with samples every minute.
//!
//! The CLI is `examples/chaos.rs` of the root package; `tests/chaos.rs`
//! runs the short preset against the binary cargo builds.

pub mod api;
pub mod candles;
mod error;
pub mod faults;
pub mod machine;
pub mod process;
pub mod report;
pub mod resources;
pub mod runner;
pub mod settings;
pub mod soak;

pub use candles::{check_database, DataCheck};
pub use error::{describe_exit, HarnessError};
pub use report::{table, Check, Failure, StormReport};
pub use resources::{Resources, Tolerance};
pub use runner::Chaos;
pub use settings::{Settings, Storm};
pub use soak::{soak, SoakReport};
