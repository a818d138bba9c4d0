//! What a run does: the collector's load, the storms, their sizes and the
//! timeouts, with the two presets of the CLI (short and soak).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ohlcv_domain::{ExchangeId, Interval, SeriesKey, Symbol};
use serde_json::{json, Value};

use crate::resources::Tolerance;

/// Valid USDT perpetual symbols, the first ones of which the simulated
/// exchange lists with their own prices; the soak adds synthetic names
/// (the exchange serves any valid symbol, its price derived from the name).
const SYMBOLS: [&str; 30] = [
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "BNBUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
    "LTCUSDT",
    "TRXUSDT",
    "BCHUSDT",
    "NEARUSDT",
    "ATOMUSDT",
    "UNIUSDT",
    "APTUSDT",
    "ARBUSDT",
    "OPUSDT",
    "SUIUSDT",
    "FILUSDT",
    "ETCUSDT",
    "INJUSDT",
    "TIAUSDT",
    "SEIUSDT",
    "WLDUSDT",
    "AAVEUSDT",
    "1000PEPEUSDT",
    "1000SHIBUSDT",
    "HBARUSDT",
];

/// The first `n` symbols: the fixed list, then `SIM00USDT`, `SIM01USDT`…
pub fn symbols(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match SYMBOLS.get(i) {
            Some(symbol) => (*symbol).to_owned(),
            None => format!("SIM{:02}USDT", i - SYMBOLS.len()),
        })
        .collect()
}

/// One kind of storm, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storm {
    /// The datasource panics again and again (`panic_after_updates` with
    /// `repeat`) until it was restarted [`Settings::panics`] times.
    Panics,
    /// The datasource's thread blocks for [`Settings::block_ms`]
    /// (`block_after_updates`), so that it misses three heartbeats and the
    /// supervisor replaces it.
    Stall,
    /// The live stream ends again and again (`drop_stream_after_updates`
    /// with `repeat`) until the datasource reconnected
    /// [`Settings::drops`] times.
    Drops,
    /// The live stream stays open and goes mute (`silence_after_updates`)
    /// until the datasource's watchdog reconnects.
    Silence,
    /// Another process holds the database's write lock (`BEGIN EXCLUSIVE`)
    /// until writes failed, for at least [`Settings::hold`].
    DatabaseLocked,
    /// The disk is full: the collector's `RLIMIT_FSIZE` is lowered until
    /// writes failed, for at least [`Settings::hold`], then restored.
    DiskFull,
    /// `kill -9` at a random moment, then the binary is started again on
    /// the same directory.
    Kill9,
    /// SIGTERM in the middle of batches at a high update rate: the exit
    /// code must be 0 with every queued candle saved; then a restart.
    Sigterm,
}

impl Storm {
    /// Every storm, in the order of a run.
    pub const ALL: [Storm; 8] = [
        Storm::Panics,
        Storm::Stall,
        Storm::Drops,
        Storm::Silence,
        Storm::DatabaseLocked,
        Storm::DiskFull,
        Storm::Kill9,
        Storm::Sigterm,
    ];

    /// Its name in tables and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Storm::Panics => "panics",
            Storm::Stall => "stall",
            Storm::Drops => "drops",
            Storm::Silence => "silence",
            Storm::DatabaseLocked => "db-locked",
            Storm::DiskFull => "disk-full",
            Storm::Kill9 => "kill-9",
            Storm::Sigterm => "sigterm",
        }
    }

    /// Whether the storm ends the process on purpose (its figures after
    /// are those of a new process).
    pub const fn replaces_process(self) -> bool {
        matches!(self, Storm::Kill9 | Storm::Sigterm)
    }
}

impl fmt::Display for Storm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Storm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Storm::ALL
            .into_iter()
            .find(|storm| storm.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Storm::ALL.iter().map(|s| s.name()).collect();
                format!("unknown storm {s:?}; the storms are {}", names.join(", "))
            })
    }
}

/// Everything a run is made of.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The collector binary.
    pub binary: PathBuf,
    /// Symbols collected from the simulated exchange.
    pub symbols: Vec<String>,
    /// Intervals collected for every symbol.
    pub intervals: Vec<Interval>,
    /// Seed of the simulated exchange: its candles are a pure function of
    /// it, which is what the stored candles are checked against.
    pub seed: u64,
    /// Live updates per second per series (the simulated exchange's
    /// `updates_per_second` counts per series: the process handles this
    /// times the number of series).
    pub updates_per_second: f64,
    /// The collector's `batch_interval`, in ms.
    pub batch_interval_ms: u64,
    /// The collector's `bootstrap_load`.
    pub bootstrap_load: u64,
    /// The storms, in order.
    pub storms: Vec<Storm>,
    /// Live updates (of all series together) before a fault fires.
    pub fault_after_updates: u64,
    /// Datasource restarts the panic storm waits for.
    pub panics: u64,
    /// Reconnects the dropped-stream storm waits for.
    pub drops: u64,
    /// How long the stall storm blocks the datasource's thread, in ms:
    /// more than three heartbeats (9 s) and the monitor's check period.
    pub block_ms: u64,
    /// Least time the database lock and the file-size limit are held.
    pub hold: Duration,
    /// Updates per second per series during the SIGTERM storm.
    pub sigterm_updates_per_second: f64,
    /// `batch_interval` during the SIGTERM storm, in ms.
    pub sigterm_batch_interval_ms: u64,
    /// The `RLIMIT_FSIZE` soft limit of the disk-full storm, in bytes:
    /// below the offsets the collector's writes reach in steady state, so
    /// that the next batch fails (see [`FileSizeLimit`]).
    ///
    /// [`FileSizeLimit`]: crate::faults::FileSizeLimit
    pub disk_limit_bytes: u64,
    /// Longest wait for the collector to print its address.
    pub startup_timeout: Duration,
    /// Longest wait for a fault to show (restarts, reconnects, failed
    /// writes), counted from when it is applied.
    pub effect_timeout: Duration,
    /// Longest wait for recovery: every child running, the datasource
    /// streaming, a batch written after that.
    pub recovery_timeout: Duration,
    /// Longest wait for the stored candles to be exact: a gap the
    /// collector is still filling is not a loss yet.
    pub data_timeout: Duration,
    /// Longest wait for threads, fds and RSS to come back within
    /// tolerance (a replaced thread ends a moment after its successor
    /// starts).
    pub settle_timeout: Duration,
    /// Longest wait for the exit after SIGTERM.
    pub shutdown_timeout: Duration,
    /// What counts as back to the level before a storm.
    pub tolerance: Tolerance,
    /// Seed of the harness's own randomness (the moment of `kill -9` and
    /// of SIGTERM), printed so that a run can be repeated.
    pub rng_seed: u64,
}

impl Settings {
    /// The short run, for the integration test and a quick check: 3
    /// symbols × 1m and 5m at 20 updates/s per series (120/s), every storm
    /// once, each lasting seconds. Two to three minutes on 2 cores.
    pub fn short(binary: PathBuf) -> Settings {
        Settings {
            binary,
            symbols: symbols(3),
            intervals: vec![Interval::M1, Interval::M5],
            seed: 7,
            updates_per_second: 20.0,
            batch_interval_ms: 200,
            bootstrap_load: 60,
            storms: Storm::ALL.to_vec(),
            fault_after_updates: 100,
            panics: 3,
            drops: 2,
            block_ms: 14_000,
            hold: Duration::from_secs(3),
            sigterm_updates_per_second: 1_000.0,
            sigterm_batch_interval_ms: 100,
            disk_limit_bytes: 16 * 1024,
            startup_timeout: Duration::from_secs(60),
            effect_timeout: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(15),
            settle_timeout: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            tolerance: Tolerance::default(),
            rng_seed: 1,
        }
    }

    /// The soak: 50 symbols × 1m and 5m at 20 updates/s per series (2000
    /// updates/s), batches every second, 1000 candles of history per
    /// series. Timeouts are long: after many restarts the supervisor's
    /// backoff reaches a minute.
    pub fn soak(binary: PathBuf) -> Settings {
        Settings {
            symbols: symbols(50),
            batch_interval_ms: 1_000,
            bootstrap_load: 1_000,
            fault_after_updates: 4_000,
            hold: Duration::from_secs(5),
            sigterm_updates_per_second: 200.0,
            effect_timeout: Duration::from_secs(240),
            recovery_timeout: Duration::from_secs(240),
            data_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(30),
            ..Settings::short(binary)
        }
    }

    /// Every series collected.
    pub fn series(&self) -> Vec<SeriesKey> {
        self.symbols
            .iter()
            .flat_map(|symbol| {
                let symbol = Symbol::new(symbol).expect("the harness's symbols are valid");
                self.intervals.iter().map(move |interval| {
                    SeriesKey::new(ExchangeId::Simulated, symbol.clone(), *interval)
                })
            })
            .collect()
    }

    /// Live updates per second of the whole process.
    pub fn total_updates_per_second(&self) -> f64 {
        self.updates_per_second * self.series().len() as f64
    }

    /// The collector's config: the simulated exchange with `faults` (the
    /// keys of `FaultConfig`; `{}` for none), at `updates_per_second` per
    /// series, writing every `batch_interval_ms`.
    pub fn config_with(
        &self,
        faults: Value,
        updates_per_second: f64,
        batch_interval_ms: u64,
    ) -> Value {
        let intervals: Vec<&str> = self.intervals.iter().map(|i| i.as_str()).collect();
        json!({
            "exchanges": {
                "simulated": {
                    "enabled": true,
                    "symbols": self.symbols,
                    "simulation": {
                        "seed": self.seed,
                        "updates_per_second": updates_per_second,
                        "faults": faults
                    }
                }
            },
            "intervals": intervals,
            "database_path": "./data/ohlcv.db",
            "batch_interval": batch_interval_ms,
            "max_records": 100_000,
            "bootstrap_load": self.bootstrap_load,
            "port": 0,
            // The harness reads every series back in bursts far above a
            // dashboard's rate; it is the collector's only client.
            "rate_limit": 0
        })
    }

    /// The collector's config between storms: no fault.
    pub fn config(&self) -> Value {
        self.config_with(json!({}), self.updates_per_second, self.batch_interval_ms)
    }

    /// The same config with `faults`.
    pub fn faulty_config(&self, faults: Value) -> Value {
        self.config_with(faults, self.updates_per_second, self.batch_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storms_parse_by_name() {
        for storm in Storm::ALL {
            assert_eq!(storm.name().parse::<Storm>(), Ok(storm));
        }
        assert!("tsunami"
            .parse::<Storm>()
            .unwrap_err()
            .contains("panics, stall"));
    }

    #[test]
    fn symbols_are_valid_and_distinct() {
        let list = symbols(50);
        assert_eq!(list[0], "BTCUSDT");
        assert_eq!(list[30], "SIM00USDT");
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 50);
        assert!(list.iter().all(|s| Symbol::new(s).is_ok()));
    }

    #[test]
    fn the_soak_runs_two_thousand_updates_a_second() {
        let soak = Settings::soak(PathBuf::from("collector"));
        assert_eq!(soak.series().len(), 100);
        assert_eq!(soak.total_updates_per_second(), 2_000.0);
    }

    #[test]
    fn configs_are_valid_collector_configs() {
        let settings = Settings::short(PathBuf::from("collector"));
        for config in [
            settings.config(),
            settings.faulty_config(json!({"panic_after_updates": 10, "repeat": true})),
        ] {
            let text = serde_json::to_string(&config).unwrap();
            ohlcv_domain::config::Config::from_json(&text).expect("valid");
        }
    }
}
