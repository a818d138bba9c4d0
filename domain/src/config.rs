//! The configuration file: typed, validated, and saved atomically.
//!
//! `config.json` holds the keys of the original design (`exchanges`,
//! `intervals`, `database_path`, `batch_interval`, `max_records`,
//! `bootstrap_load`, `port`) plus `bind`, the optional `api_token`,
//! per-exchange `rest_url`/`ws_url` and the simulated exchange's
//! `simulation` block. Every error names the key
//! and the reason; a file that fails validation is never applied, and saves
//! go through a temp file, fsync and rename, keeping the previous version as
//! `<file>.bak`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{json, ExchangeId, Interval, Symbol};

/// Shortest accepted `batch_interval`: below this, SQLite commits would
/// dominate the storage thread's time.
pub const MIN_BATCH_INTERVAL_MS: u64 = 100;
/// Longest accepted `batch_interval`: an hour of unsaved candles is already a
/// lot to lose if the machine (not the process) dies.
pub const MAX_BATCH_INTERVAL_MS: u64 = 3_600_000;
/// Largest accepted `max_records` and `bootstrap_load`, per series: 10 years
/// of one-minute candles.
pub const MAX_RECORDS_LIMIT: u64 = 5_256_000;
/// Highest simulated update rate per series; enough to flood any consumer.
pub const MAX_SIMULATED_UPDATES_PER_SECOND: f64 = 100_000.0;
/// Most symbols one exchange may be given. Each symbol costs one stream
/// per interval and a history sync; 500 covers every USDT perpetual an
/// exchange lists today, and a list beyond that is almost surely a mistake.
pub const MAX_SYMBOLS_PER_EXCHANGE: usize = 500;
/// Longest a simulated `block_after_updates` fault may block, in
/// milliseconds: ten minutes. The supervisor calls a datasource stalled
/// after three missed heartbeats, 3 s apart, so any block beyond ~10 s
/// already exercises stall handling; a longer one tests nothing more and
/// leaves a thread asleep that cannot be replaced until it wakes (a zero
/// too many would be hours).
pub const MAX_FAULT_BLOCK_MS: u64 = 600_000;
/// Shortest accepted `api_token`, in characters: 16 random characters are
/// far beyond guessing over HTTP, and anything shorter is likely a
/// placeholder (`changeme`) that protects nothing.
pub const MIN_API_TOKEN_CHARS: usize = 16;
/// Default `rate_limit`, in requests per second per client address: a
/// dashboard loading a few charts and polling `/status` stays far below it,
/// a runaway script or a flood does not.
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// Default `max_clients`: WebSocket clients at once. Each costs a task and a
/// position in the broadcast ring; a few hundred is far more than dashboards
/// a user keeps open and still little memory.
pub const DEFAULT_MAX_CLIENTS: u32 = 256;

/// The whole configuration, as read from `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-exchange settings, keyed by exchange id (`binance_futures`, …).
    pub exchanges: BTreeMap<ExchangeId, ExchangeConfig>,
    /// Candle intervals collected for every symbol of every enabled exchange.
    #[serde(default = "default_intervals")]
    pub intervals: Vec<Interval>,
    /// SQLite file; a relative path is resolved against the config file's
    /// directory (see [`Config::resolved_database_path`]).
    #[serde(default = "default_database_path")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "data/ohlcv.db"))]
    pub database_path: PathBuf,
    /// How often queued candle updates are written, in milliseconds.
    #[serde(default = "default_batch_interval")]
    pub batch_interval: u64,
    /// Candles kept per series; the oldest beyond this are deleted.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Candles of history loaded per series when a series has none stored.
    #[serde(default = "default_bootstrap_load")]
    pub bootstrap_load: u64,
    /// HTTP/WebSocket port; 0 picks a free port (printed at start-up).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Address the HTTP server binds to; loopback unless said otherwise.
    #[serde(default = "default_bind")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "127.0.0.1"))]
    pub bind: IpAddr,
    /// Token that mutating HTTP routes and the WebSocket `reload` command
    /// require (`Authorization: Bearer <token>`), so that whoever can reach
    /// the port cannot also change what is collected or delete the data.
    /// Absent: those routes are open, which is safe on loopback only. At
    /// least [`MIN_API_TOKEN_CHARS`] characters, no whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<ApiToken>,
    /// Web origins (`http://localhost:5173`: scheme, host and port) whose
    /// pages may call the API from a browser: they get CORS headers, and
    /// their `POST`s and WebSocket connections are accepted. The dashboard
    /// served by the gateway itself is same-origin and needs no entry; any
    /// other page is refused, so that a site the user visits cannot drive
    /// the collector. Applies at the next start of the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Host names (`collector.lan`) a request's `Host` header may name,
    /// besides `localhost`, IP literals and the bound address. Any other
    /// name is refused (421), which defeats DNS rebinding: a hostile page
    /// whose name is made to resolve to this machine still sends its own
    /// name. Applies at the next start of the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Requests per second each client address may make to the gateway
    /// (HTTP and WebSocket upgrades), with bursts of twice that; beyond it,
    /// 429. `0` disables the limit. Applies at the next start of the
    /// gateway.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// Most WebSocket clients connected at once; at least 1. Bounds what
    /// clients can make the gateway hold. Applies at the next start of the
    /// gateway.
    #[serde(default = "default_max_clients")]
    pub max_clients: u32,
}

/// A web origin, `scheme://host[:port]`, as browsers send it in the
/// `Origin` header: parsed so that `allowed_origins` and the header compare
/// by their parts (the host case-insensitively, a default port spelled out
/// or not) rather than as strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`, lower case.
    pub scheme: String,
    /// Host name (lower case) or IP literal (IPv6 without brackets).
    pub host: String,
    /// The port, the scheme's default (80, 443) when not written.
    pub port: u16,
}

impl Origin {
    /// Parses `http[s]://host[:port]`: no path (not even `/`), query,
    /// fragment or user info, which an `Origin` header never has.
    ///
    /// # Errors
    /// A reason for humans when `text` is not such an origin.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let not_origin =
            |why: &str| format!("{text:?} is not an origin like http://localhost:5173 ({why})");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| not_origin("no scheme://"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(not_origin("the scheme must be http or https")),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(not_origin("only scheme://host[:port], no path"));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| not_origin("the host or port is not valid"))?;
        Ok(Origin {
            scheme,
            host,
            port: port.unwrap_or(default_port),
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Splits `host[:port]` (an `Host` header's value, an origin's authority)
/// into the host, lower case and without IPv6 brackets or a trailing dot,
/// and the port if one is written. `None` when the host is not a host name
/// or IP literal, or the port is not a number from 1 to 65535.
pub fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (inside.to_owned(), port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => {
            let port = digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse::<u16>().ok())
                .flatten()
                .filter(|p| *p != 0)?;
            Some(port)
        }
    };
    let mut host = host.to_ascii_lowercase();
    if host.ends_with('.') && !host.contains(':') {
        host.pop();
    }
    (host.contains(':') || is_host_name(&host)).then_some((host, port))
}

/// Whether `name` is a DNS host name (or an IPv4 literal, which has the
/// same characters): dot-separated labels of letters, digits and `-`, none
/// empty or longer than 63, at most 253 in all.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The secret of `api_token`.
///
/// A type of its own so that the secret cannot leak by accident: its
/// `Debug` prints `ApiToken(***)` (a `Config` logged with `?config` shows no
/// secret), it has no `Display`, and the only way to compare it is
/// [`ApiToken::matches`], in constant time. It is saved to the file as the
/// plain string, since the file is where the operator keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token from its text, checked as the config file's value is.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `api_token` when `token` is shorter than
    /// [`MIN_API_TOKEN_CHARS`] or contains whitespace or control characters
    /// (which an `Authorization` header cannot carry intact).
    pub fn new(token: impl Into<String>) -> Result<ApiToken, ConfigError> {
        let token = ApiToken(token.into());
        token.validate()?;
        Ok(token)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // The reasons never quote the value: they reach logs and HTTP
        // answers, and even a refused secret may be a real one mistyped.
        if self.0.chars().count() < MIN_API_TOKEN_CHARS {
            return Err(ConfigError::invalid(
                "api_token",
                format!("must be at least {MIN_API_TOKEN_CHARS} characters long"),
            ));
        }
        if self.0.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::invalid(
                "api_token",
                "must not contain whitespace or control characters",
            ));
        }
        Ok(())
    }

    /// Whether `presented` (the bytes a client sent) is this token.
    ///
    /// Takes the same time whatever the bytes are (for a given length), so
    /// that response times do not tell an attacker how many leading bytes
    /// were right: every byte is compared, with no early exit.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.is_empty() {
            // Only a token built around validation could be empty; it
            // matches nothing rather than everything.
            return false;
        }
        let mut difference = expected.len() ^ presented.len();
        for (i, byte) in presented.iter().enumerate() {
            difference |= usize::from(byte ^ expected[i % expected.len()]);
        }
        std::hint::black_box(difference) == 0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// Settings of one exchange. The default is an exchange that is disabled,
/// has no symbols and uses its public endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Whether the collector runs a datasource for this exchange; only an
    /// exchange with an adapter in the registry can be enabled.
    #[serde(default)]
    pub enabled: bool,
    /// Normalised symbols (`BTCUSDT`) to collect.
    #[serde(default)]
    pub symbols: Vec<Symbol>,
    /// REST base URL; the exchange's public endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// WebSocket base URL; the exchange's public endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// Behaviour of the simulated exchange; only valid on `simulated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<SimulationConfig>,
}

/// How the simulated exchange behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// Seed of the deterministic price paths: same seed, same candles.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Live updates of the open candle per series per second.
    #[serde(default = "default_updates_per_second")]
    pub updates_per_second: f64,
    /// Faults to inject, for testing supervision and recovery.
    #[serde(default)]
    pub faults: FaultConfig,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            seed: default_seed(),
            updates_per_second: default_updates_per_second(),
            faults: FaultConfig::default(),
        }
    }
}

/// Faults the simulated exchange injects, counted in live updates delivered
/// since start: once per process, or every N updates with `repeat`. The
/// default injects none, with the same `block_ms` as `"faults": {}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Panic inside the datasource after this many live updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_after_updates: Option<u64>,
    /// End the live stream (a disconnect) after this many updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_stream_after_updates: Option<u64>,
    /// Keep the stream open but stop delivering after this many updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_after_updates: Option<u64>,
    /// Block the datasource's thread for `block_ms` after this many updates,
    /// so that it misses its heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_after_updates: Option<u64>,
    /// How long a `block_after_updates` fault blocks, in milliseconds; at
    /// most [`MAX_FAULT_BLOCK_MS`].
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Fire each fault again every time its count of updates comes round
    /// (after N, 2N, 3N… updates) instead of once: a datasource that keeps
    /// crashing, to exercise the restart-intensity limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
}

/// Why a list of symbols cannot be an exchange's `symbols`.
///
/// Its own type, not a [`ConfigError`], so that `POST /exchangeSymbols`
/// can answer each rule with its own code (`too_many_symbols`,
/// `duplicate_symbol`) while the config file and `POST /config` apply the
/// very same rules through [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolListError {
    /// More than [`MAX_SYMBOLS_PER_EXCHANGE`] symbols.
    #[error("{count} given, at most {MAX_SYMBOLS_PER_EXCHANGE} are allowed per exchange")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A symbol that an earlier item of the list already names.
    #[error("{symbol} is listed twice")]
    Duplicate {
        /// Index of the second occurrence.
        index: usize,
        /// The symbol.
        symbol: Symbol,
    },
}

impl SymbolListError {
    /// The key the error is about, given the key of the list itself
    /// (`symbols`, `exchanges.simulated.symbols`): the list for
    /// [`SymbolListError::TooMany`], the repeated item for
    /// [`SymbolListError::Duplicate`] (`symbols[2]`).
    pub fn key(&self, list: &str) -> String {
        match self {
            SymbolListError::TooMany { .. } => list.to_owned(),
            SymbolListError::Duplicate { index, .. } => format!("{list}[{index}]"),
        }
    }
}

/// Checks `symbols` against the rules of every exchange's `symbols`,
/// wherever the list comes from: at most [`MAX_SYMBOLS_PER_EXCHANGE`], none
/// twice.
///
/// # Errors
/// [`SymbolListError`] for the first rule broken, the count first.
pub fn check_symbols(symbols: &[Symbol]) -> Result<(), SymbolListError> {
    if symbols.len() > MAX_SYMBOLS_PER_EXCHANGE {
        return Err(SymbolListError::TooMany {
            count: symbols.len(),
        });
    }
    // At most 500 symbols: comparing each with those before it is cheap.
    for (index, symbol) in symbols.iter().enumerate() {
        if symbols[..index].contains(symbol) {
            return Err(SymbolListError::Duplicate {
                index,
                symbol: symbol.clone(),
            });
        }
    }
    Ok(())
}

impl Default for FaultConfig {
    /// Written out rather than derived so that an omitted `faults` and
    /// `"faults": {}` mean the same: a derived default would block for 0 ms.
    fn default() -> Self {
        FaultConfig {
            panic_after_updates: None,
            drop_stream_after_updates: None,
            silence_after_updates: None,
            block_after_updates: None,
            block_ms: default_block_ms(),
            repeat: false,
        }
    }
}

fn default_intervals() -> Vec<Interval> {
    vec![Interval::M1]
}
fn default_database_path() -> PathBuf {
    PathBuf::from("./data/ohlcv.db")
}
fn default_batch_interval() -> u64 {
    60_000
}
fn default_max_records() -> u64 {
    100_000
}
fn default_bootstrap_load() -> u64 {
    10_000
}
fn default_port() -> u16 {
    3000
}
fn default_bind() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_rate_limit() -> u32 {
    DEFAULT_RATE_LIMIT
}
fn default_max_clients() -> u32 {
    DEFAULT_MAX_CLIENTS
}
fn default_seed() -> u64 {
    42
}
fn default_updates_per_second() -> f64 {
    1.0
}
fn default_block_ms() -> u64 {
    15_000
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written. The message is the path; the
    /// OS error is the source, printed after it by
    /// [`ErrorChain`](crate::ErrorChain).
    #[error("{}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON, or a key has the wrong type or an unknown name.
    #[error("{key}: {reason}")]
    Parse {
        /// Path of the offending key (`exchanges.simulated.symbols[2]`), or
        /// `.` for the document itself.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The values parse but break a rule.
    #[error("{key}: {reason}")]
    Invalid {
        /// Path of the offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Parses and validates a configuration document (the file's text).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`], naming the key.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let value = json::from_str(text).map_err(|error| ConfigError::Parse {
            key: error.path,
            reason: error.reason,
        })?;
        Config::from_value(value)
    }

    /// Parses and validates an already-decoded JSON value (an HTTP body,
    /// parsed by [`json`] as the file is, so that both refuse the same
    /// documents).
    ///
    /// # Errors
    /// As [`Config::from_json`].
    pub fn from_value(value: serde_json::Value) -> Result<Config, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let mut reason = e.into_inner().to_string();
            if reason.is_empty() {
                reason = "invalid value".into();
            }
            ConfigError::Parse { key, reason }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The document as pretty JSON, as it is saved.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every rule that the types alone do not enforce.
    ///
    /// What this build can run is not checked here: which exchanges have an
    /// adapter and which intervals each serves is asked of the adapter
    /// registry (`ohlcv_exchanges::registry::check_config`), which the
    /// supervisor runs on every config it accepts.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (id, exchange) in &self.exchanges {
            exchange.validate(*id)?;
        }
        if self.intervals.is_empty() {
            return Err(ConfigError::invalid(
                "intervals",
                "at least one interval is needed",
            ));
        }
        for (i, interval) in self.intervals.iter().enumerate() {
            if self.intervals[..i].contains(interval) {
                return Err(ConfigError::invalid(
                    format!("intervals[{i}]"),
                    format!("{interval} is listed twice"),
                ));
            }
        }
        if self.database_path.as_os_str().is_empty() {
            return Err(ConfigError::invalid("database_path", "must not be empty"));
        }
        if !(MIN_BATCH_INTERVAL_MS..=MAX_BATCH_INTERVAL_MS).contains(&self.batch_interval) {
            return Err(ConfigError::invalid(
                "batch_interval",
                format!(
                    "{} ms is out of range {MIN_BATCH_INTERVAL_MS}..={MAX_BATCH_INTERVAL_MS}",
                    self.batch_interval
                ),
            ));
        }
        if !(1..=MAX_RECORDS_LIMIT).contains(&self.max_records) {
            return Err(ConfigError::invalid(
                "max_records",
                format!(
                    "{} is out of range 1..={MAX_RECORDS_LIMIT}",
                    self.max_records
                ),
            ));
        }
        if self.bootstrap_load > self.max_records {
            return Err(ConfigError::invalid(
                "bootstrap_load",
                format!(
                    "{} exceeds max_records ({}): the history would be deleted as soon as it is loaded",
                    self.bootstrap_load, self.max_records
                ),
            ));
        }
        if let Some(token) = &self.api_token {
            token.validate()?;
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            Origin::parse(origin)
                .map_err(|reason| ConfigError::invalid(format!("allowed_origins[{i}]"), reason))?;
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            let lower = host.to_ascii_lowercase();
            if !is_host_name(lower.strip_suffix('.').unwrap_or(&lower)) {
                return Err(ConfigError::invalid(
                    format!("allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name like collector.lan (no scheme, no port)"),
                ));
            }
        }
        if self.max_clients == 0 {
            return Err(ConfigError::invalid(
                "max_clients",
                "must be at least 1: with none, no WebSocket client could connect",
            ));
        }
        Ok(())
    }

    /// The database path, with a relative path taken from `config_dir`.
    pub fn resolved_database_path(&self, config_dir: &Path) -> PathBuf {
        if self.database_path.is_absolute() || config_dir == Path::new(".") {
            self.database_path.clone()
        } else {
            config_dir.join(&self.database_path)
        }
    }

    /// Exchanges with `enabled: true`, in id order.
    pub fn enabled_exchanges(&self) -> impl Iterator<Item = (ExchangeId, &ExchangeConfig)> {
        self.exchanges
            .iter()
            .filter(|(_, e)| e.enabled)
            .map(|(id, e)| (*id, e))
    }
}

impl ExchangeConfig {
    fn validate(&self, id: ExchangeId) -> Result<(), ConfigError> {
        let key = |field: &str| format!("exchanges.{id}.{field}");
        check_symbols(&self.symbols)
            .map_err(|error| ConfigError::invalid(error.key(&key("symbols")), error.to_string()))?;
        for (field, url, schemes) in [
            ("rest_url", &self.rest_url, ["http://", "https://"]),
            ("ws_url", &self.ws_url, ["ws://", "wss://"]),
        ] {
            if let Some(url) = url {
                let host_part = schemes.iter().find_map(|s| url.strip_prefix(s));
                if host_part.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                    return Err(ConfigError::invalid(
                        key(field),
                        format!("{url:?} is not a {} URL with a host", schemes.join(" or ")),
                    ));
                }
            }
        }
        if let Some(sim) = &self.simulation {
            if id != ExchangeId::Simulated {
                return Err(ConfigError::invalid(
                    key("simulation"),
                    "only the simulated exchange takes a simulation block",
                ));
            }
            let rate = sim.updates_per_second;
            if !(rate.is_finite() && rate > 0.0 && rate <= MAX_SIMULATED_UPDATES_PER_SECOND) {
                return Err(ConfigError::invalid(
                    key("simulation.updates_per_second"),
                    format!("{rate} is out of range (0, {MAX_SIMULATED_UPDATES_PER_SECOND}]"),
                ));
            }
            let block_ms = sim.faults.block_ms;
            if block_ms > MAX_FAULT_BLOCK_MS {
                return Err(ConfigError::invalid(
                    key("simulation.faults.block_ms"),
                    format!("{block_ms} ms is more than {MAX_FAULT_BLOCK_MS} (ten minutes)"),
                ));
            }
        }
        Ok(())
    }
}

/// Reads and writes the configuration file.
///
/// Saving writes `<file>.tmp`, fsyncs it, copies the current file to
/// `<file>.bak`, renames the temp file over the original and fsyncs the
/// directory, so a crash at any point leaves either the old or the new
/// version in place, never a torn file.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    path: PathBuf,
}

impl ConfigStore {
    /// A store for the file at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfigStore { path: path.into() }
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory relative paths in the config are resolved against.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Path of the backup of the previous version.
    pub fn backup_path(&self) -> PathBuf {
        with_suffix(&self.path, ".bak")
    }

    /// Reads and validates the file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] if unreadable, else as [`Config::from_json`].
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(&self.path).map_err(|source| ConfigError::Io {
            path: self.path.clone(),
            source,
        })?;
        Config::from_json(&text)
    }

    /// Validates `config` and writes it atomically, keeping the previous
    /// file as the backup.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a config that breaks a rule (nothing is
    /// written), [`ConfigError::Io`] if the disk refuses.
    pub fn save(&self, config: &Config) -> Result<(), ConfigError> {
        config.validate()?;
        let io = |source| ConfigError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = with_suffix(&self.path, ".tmp");
        {
            let mut file = fs::File::create(&tmp).map_err(io)?;
            file.write_all(config.to_json_pretty().as_bytes())
                .map_err(io)?;
            file.write_all(b"\n").map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        if self.path.exists() {
            let backup = self.backup_path();
            fs::copy(&self.path, &backup).map_err(io)?;
            fs::File::open(&backup)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
        fs::rename(&tmp, &self.path).map_err(io)?;
        // Make the rename itself durable.
        fs::File::open(self.dir())
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "exchanges": {
        "simulated": { "enabled": true, "symbols": ["BTCUSDT", "ETHUSDT"],
                       "simulation": { "seed": 7, "updates_per_second": 5 } },
        "binance_futures": { "enabled": false, "symbols": ["BTCUSDT"],
                             "rest_url": "http://127.0.0.1:9000", "ws_url": "ws://127.0.0.1:9001" }
      },
      "intervals": ["1m", "5m"],
      "database_path": "./data/ohlcv.db",
      "batch_interval": 60000,
      "max_records": 100000,
      "bootstrap_load": 10000,
      "port": 3000
    }"#;

    fn error_of(text: &str) -> String {
        Config::from_json(text).unwrap_err().to_string()
    }

    fn sample_with(pointer: &str, value: serde_json::Value) -> String {
        let mut doc: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        match doc.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            // A top-level key the sample leaves out (`/api_token`).
            None => doc[&pointer[1..]] = value,
        }
        doc.to_string()
    }

    const TOKEN: &str = "s3cret-token-0123456789";

    #[test]
    fn parses_the_seed_keys_and_defaults_the_rest() {
        let config = Config::from_json(SAMPLE).unwrap();
        assert_eq!(config.intervals, vec![Interval::M1, Interval::M5]);
        assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let sim = &config.exchanges[&ExchangeId::Simulated];
        assert_eq!(sim.simulation.as_ref().unwrap().seed, 7);
        assert_eq!(
            config
                .enabled_exchanges()
                .map(|(id, _)| id)
                .collect::<Vec<_>>(),
            vec![ExchangeId::Simulated]
        );

        let minimal = Config::from_json(r#"{"exchanges":{}}"#).unwrap();
        assert_eq!(minimal.batch_interval, 60_000);
        assert_eq!(minimal.port, 3000);
        assert_eq!(minimal.intervals, vec![Interval::M1]);
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let cases = [
            (
                sample_with("/exchanges/simulated/symbols/1", "BTC/USDT".into()),
                "exchanges.simulated.symbols[1]: \"BTC/USDT\" is not a symbol like BTCUSDT",
            ),
            (
                sample_with("/exchanges/simulated/symbols/1", "".into()),
                "exchanges.simulated.symbols[1]: \"\" is not a symbol",
            ),
            (
                sample_with("/exchanges/simulated/symbols/1", "BTCUSDT".into()),
                "exchanges.simulated.symbols[1]: BTCUSDT is listed twice",
            ),
            (
                sample_with("/intervals/1", "2m".into()),
                "intervals[1]: unknown interval \"2m\"",
            ),
            (
                sample_with("/intervals/1", "1m".into()),
                "intervals[1]: 1m is listed twice",
            ),
            (
                sample_with("/intervals", serde_json::json!([])),
                "intervals: at least one interval",
            ),
            (
                sample_with("/batch_interval", 5.into()),
                "batch_interval: 5 ms is out of range",
            ),
            (
                sample_with("/max_records", 0.into()),
                "max_records: 0 is out of range",
            ),
            (
                sample_with("/bootstrap_load", 200000.into()),
                "bootstrap_load: 200000 exceeds max_records",
            ),
            (
                sample_with("/port", 70000.into()),
                "port: invalid value: integer `70000`",
            ),
            (
                sample_with("/exchanges/binance_futures/ws_url", "http://x".into()),
                "exchanges.binance_futures.ws_url: \"http://x\" is not a ws:// or wss:// URL",
            ),
            (
                sample_with(
                    "/exchanges/simulated/simulation/updates_per_second",
                    0.into(),
                ),
                "exchanges.simulated.simulation.updates_per_second: 0 is out of range",
            ),
            (
                r#"{"exchanges":{},"colour":"blue"}"#.to_owned(),
                "colour: unknown field `colour`",
            ),
            (
                r#"{"exchanges":{"kraken":{}}}"#.to_owned(),
                "exchanges.kraken: unknown exchange \"kraken\"",
            ),
            (
                r#"{"exchanges":{"simulated":{"enabled":true,"simbols":[]}}}"#.to_owned(),
                "exchanges.simulated.simbols: unknown field `simbols`",
            ),
            (
                r#"{"exchanges":{"binance_futures":{"simulation":{}}}}"#.to_owned(),
                "exchanges.binance_futures.simulation: only the simulated exchange",
            ),
            (
                sample_with("/api_token", "short".into()),
                "api_token: must be at least 16 characters long",
            ),
            (
                sample_with("/api_token", "sixteen chars with spaces".into()),
                "api_token: must not contain whitespace",
            ),
            (
                sample_with("/api_token", "0123456789abcdef\n".into()),
                "api_token: must not contain whitespace",
            ),
            (
                sample_with("/api_token", 1234567890123456_u64.into()),
                "api_token: invalid type: integer",
            ),
            (
                sample_with("/allowed_origins", serde_json::json!(["http://localhost:5173", "localhost:5173"])),
                "allowed_origins[1]: \"localhost:5173\" is not an origin like http://localhost:5173 (no scheme://)",
            ),
            (
                sample_with("/allowed_origins", serde_json::json!(["http://localhost:5173/"])),
                "allowed_origins[0]: \"http://localhost:5173/\" is not an origin like http://localhost:5173 (only scheme://host[:port], no path)",
            ),
            (
                sample_with("/allowed_origins", serde_json::json!(["ftp://example.com"])),
                "allowed_origins[0]: \"ftp://example.com\" is not an origin like http://localhost:5173 (the scheme must be http or https)",
            ),
            (
                sample_with("/allowed_origins", serde_json::json!(["http://exa mple.com:99999"])),
                "allowed_origins[0]: \"http://exa mple.com:99999\" is not an origin like http://localhost:5173 (the host or port is not valid)",
            ),
            (
                sample_with("/allowed_origins", "http://localhost:5173".into()),
                "allowed_origins: invalid type: string",
            ),
            (
                sample_with("/allowed_hosts", serde_json::json!(["collector.lan", "collector.lan:3000"])),
                "allowed_hosts[1]: \"collector.lan:3000\" is not a host name like collector.lan",
            ),
            (
                sample_with("/allowed_hosts", serde_json::json!(["http://collector.lan"])),
                "allowed_hosts[0]: \"http://collector.lan\" is not a host name",
            ),
            (
                sample_with("/rate_limit", (-1).into()),
                "rate_limit: invalid value: integer `-1`",
            ),
            (
                sample_with("/max_clients", 0.into()),
                "max_clients: must be at least 1",
            ),
            ("not json".to_owned(), ".: expected ident"),
        ];
        for (text, expected) in cases {
            let err = error_of(&text);
            assert!(
                err.starts_with(expected),
                "expected {expected:?}, got {err:?}"
            );
        }
    }

    #[test]
    fn an_exchange_takes_at_most_500_symbols_none_twice() {
        let symbols = |n: usize| -> Vec<Symbol> {
            (0..n)
                .map(|i| Symbol::new(&format!("S{i}USDT")).unwrap())
                .collect()
        };
        let with_symbols = |list: &[Symbol]| {
            sample_with(
                "/exchanges/binance_futures/symbols",
                serde_json::to_value(list).unwrap(),
            )
        };
        let most = symbols(MAX_SYMBOLS_PER_EXCHANGE);
        assert_eq!(check_symbols(&most), Ok(()));
        Config::from_json(&with_symbols(&most)).unwrap();

        let too_many = symbols(MAX_SYMBOLS_PER_EXCHANGE + 1);
        let error = check_symbols(&too_many).unwrap_err();
        assert_eq!(error, SymbolListError::TooMany { count: 501 });
        assert_eq!(error.key("symbols"), "symbols");
        assert_eq!(
            error_of(&with_symbols(&too_many)),
            "exchanges.binance_futures.symbols: 501 given, at most 500 are allowed per exchange"
        );

        let mut twice = symbols(3);
        twice.push(twice[1].clone());
        let error = check_symbols(&twice).unwrap_err();
        assert_eq!(error.key("symbols"), "symbols[3]");
        assert_eq!(error.to_string(), "S1USDT is listed twice");
        assert_eq!(
            error_of(&with_symbols(&twice)),
            "exchanges.binance_futures.symbols[3]: S1USDT is listed twice"
        );
        // The count comes first: a long list is refused without a scan.
        twice.extend(too_many);
        assert!(matches!(
            check_symbols(&twice),
            Err(SymbolListError::TooMany { count: 505 })
        ));
    }

    #[test]
    fn omitted_faults_and_empty_faults_mean_the_same() {
        let simulated = |simulation: &str| {
            let text = format!(r#"{{"exchanges":{{"simulated":{{"simulation":{simulation}}}}}}}"#);
            let config = Config::from_json(&text).unwrap();
            config.exchanges[&ExchangeId::Simulated]
                .simulation
                .clone()
                .unwrap()
                .faults
        };
        assert_eq!(simulated("{}"), simulated(r#"{"faults":{}}"#));
        assert_eq!(simulated("{}"), FaultConfig::default());
        assert_eq!(FaultConfig::default().block_ms, 15_000);
        assert_eq!(SimulationConfig::default().faults, FaultConfig::default());
    }

    #[test]
    fn a_fault_blocks_for_at_most_ten_minutes() {
        let with_block = |ms: u64| {
            sample_with(
                "/exchanges/simulated/simulation",
                serde_json::json!({"faults": {"block_after_updates": 10, "block_ms": ms}}),
            )
        };
        let most = Config::from_json(&with_block(MAX_FAULT_BLOCK_MS)).unwrap();
        let faults = &most.exchanges[&ExchangeId::Simulated]
            .simulation
            .as_ref()
            .unwrap()
            .faults;
        assert_eq!(faults.block_ms, 600_000);
        assert_eq!(
            error_of(&with_block(MAX_FAULT_BLOCK_MS + 1)),
            "exchanges.simulated.simulation.faults.block_ms: 600001 ms is more than 600000 (ten minutes)"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let cases = [
            (
                r#"{"exchanges":{},"port":3000,"port":4000}"#,
                "port: key listed twice at line 1 column 34",
            ),
            (
                r#"{"exchanges":{"simulated":{"enabled":true},"simulated":{}}}"#,
                "exchanges.simulated: key listed twice",
            ),
            (
                r#"{"exchanges":{"simulated":{"symbols":["BTCUSDT"],"symbols":["ETHUSDT"]}}}"#,
                "exchanges.simulated.symbols: key listed twice",
            ),
            (
                r#"{"exchanges":{"simulated":{"simulation":{"faults":{"repeat":true,"repeat":false}}}}}"#,
                "exchanges.simulated.simulation.faults.repeat: key listed twice",
            ),
        ];
        for (text, expected) in cases {
            let err = error_of(text);
            assert!(
                err.starts_with(expected),
                "expected {expected:?}, got {err:?}"
            );
        }
    }

    #[test]
    fn gateway_keys_default_to_a_closed_gateway_and_parse_when_given() {
        let config = Config::from_json(SAMPLE).unwrap();
        assert!(config.allowed_origins.is_empty());
        assert!(config.allowed_hosts.is_empty());
        assert_eq!(config.rate_limit, DEFAULT_RATE_LIMIT);
        assert_eq!(config.max_clients, DEFAULT_MAX_CLIENTS);
        // Empty lists are not written out, so saved files stay as they were.
        let saved = config.to_json_pretty();
        assert!(!saved.contains("allowed_"), "{saved}");

        let mut doc: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        doc["allowed_origins"] =
            serde_json::json!(["http://localhost:5173", "HTTPS://UI.example.com"]);
        doc["allowed_hosts"] = serde_json::json!(["collector.lan", "Collector.Example.COM."]);
        doc["rate_limit"] = 0.into();
        doc["max_clients"] = 1.into();
        let config = Config::from_json(&doc.to_string()).unwrap();
        assert_eq!(config.allowed_origins.len(), 2);
        assert_eq!(config.allowed_hosts.len(), 2);
        assert_eq!((config.rate_limit, config.max_clients), (0, 1));
        assert_eq!(Config::from_json(&config.to_json_pretty()).unwrap(), config);
    }

    #[test]
    fn origins_compare_by_their_parts() {
        let parse = |text: &str| Origin::parse(text).unwrap();
        assert_eq!(
            parse("HTTP://LocalHost:5173"),
            Origin {
                scheme: "http".into(),
                host: "localhost".into(),
                port: 5173
            }
        );
        assert_eq!(parse("http://example.com"), parse("http://example.com:80"));
        assert_eq!(parse("https://example.com").port, 443);
        assert_ne!(parse("https://example.com"), parse("http://example.com"));
        assert_eq!(parse("http://[::1]:3000").host, "::1");
        assert_eq!(parse("http://[::1]:3000").to_string(), "http://[::1]:3000");
        for bad in [
            "null",
            "",
            "http://",
            "http://:80",
            "http://a:0",
            "http://a:",
            "http://a:+80",
            "http://[zz]:1",
            "http://::1",
            "http://user@host",
            "http://host/path",
            "http://-bad-.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            split_host_port("Example.COM.:8080"),
            Some(("example.com".into(), Some(8080)))
        );
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port("a b"), None);
    }

    #[test]
    fn api_token_is_optional_and_never_printed() {
        let open = Config::from_json(SAMPLE).unwrap();
        assert_eq!(open.api_token, None);
        assert!(
            !open.to_json_pretty().contains("api_token"),
            "an absent token is not written out"
        );

        let config = Config::from_json(&sample_with("/api_token", TOKEN.into())).unwrap();
        assert_eq!(config.api_token, Some(ApiToken::new(TOKEN).unwrap()));
        // Saved as the plain string: the file is where the operator keeps it.
        let saved: serde_json::Value = serde_json::from_str(&config.to_json_pretty()).unwrap();
        assert_eq!(saved["api_token"], TOKEN);
        assert_eq!(Config::from_json(&config.to_json_pretty()).unwrap(), config);
        // Never in a debug print, so never in a log line.
        let debug = format!("{config:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("api_token: Some(ApiToken(***))"), "{debug}");

        // `null` is the same as absent.
        let null = Config::from_json(&sample_with("/api_token", serde_json::Value::Null)).unwrap();
        assert_eq!(null.api_token, None);

        // Exactly the minimum length is enough; any non-whitespace works.
        assert!(ApiToken::new("x".repeat(MIN_API_TOKEN_CHARS)).is_ok());
        assert!(ApiToken::new("ééééééééééééééé€").is_ok());
        let short = ApiToken::new("x".repeat(MIN_API_TOKEN_CHARS - 1)).unwrap_err();
        assert!(short.to_string().starts_with("api_token: "), "{short}");
        assert!(ApiToken::new("0123456789abcdef\u{7f}").is_err());

        // Errors never quote the refused value.
        let refused = "almost-a-secret with space";
        let error = error_of(&sample_with("/api_token", refused.into()));
        assert!(!error.contains("almost-a-secret"), "{error}");
    }

    #[test]
    fn api_token_matches_only_itself() {
        let token = ApiToken::new(TOKEN).unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        let mut wrong_last = TOKEN.as_bytes().to_vec();
        *wrong_last.last_mut().unwrap() ^= 1;
        let doubled = TOKEN.repeat(2);
        for presented in [
            &wrong_last[..],
            &TOKEN.as_bytes()[..TOKEN.len() - 1],
            format!("{TOKEN}x").as_bytes(),
            doubled.as_bytes(),
            b"",
            TOKEN.to_uppercase().as_bytes(),
        ] {
            assert!(
                !token.matches(presented),
                "{:?} matched",
                String::from_utf8_lossy(presented)
            );
        }
    }

    #[test]
    fn save_is_atomic_and_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::new(dir.path().join("config.json"));
        let first = Config::from_json(SAMPLE).unwrap();
        store.save(&first).unwrap();
        assert!(!store.backup_path().exists(), "no previous version yet");
        assert_eq!(store.load().unwrap(), first);

        let mut second = first.clone();
        second.port = 4000;
        store.save(&second).unwrap();
        assert_eq!(store.load().unwrap(), second);
        let backup = Config::from_json(&fs::read_to_string(store.backup_path()).unwrap()).unwrap();
        assert_eq!(backup, first);
        assert!(!dir.path().join("config.json.tmp").exists());

        let mut bad = second.clone();
        bad.batch_interval = 1;
        assert!(store.save(&bad).is_err());
        assert_eq!(
            store.load().unwrap(),
            second,
            "a refused config is never written"
        );
    }

    #[test]
    fn an_unreadable_file_is_reported_with_its_os_error_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.json");
        let error = ConfigStore::new(&path).load().unwrap_err();
        let ConfigError::Io { source, .. } = &error else {
            panic!("{error:?}");
        };
        let os = source.to_string();
        let rendered = crate::ErrorChain(&error).to_string();
        assert_eq!(rendered, format!("{}: {os}", path.display()), "{rendered}");
        assert_eq!(rendered.matches(&os).count(), 1, "{rendered}");
    }

    #[test]
    fn relative_database_paths_follow_the_config_file() {
        let config = Config::from_json(SAMPLE).unwrap();
        let store = ConfigStore::new("/etc/ohlcv/config.json");
        assert_eq!(
            config.resolved_database_path(&store.dir()),
            PathBuf::from("/etc/ohlcv/./data/ohlcv.db")
        );
        assert_eq!(ConfigStore::new("config.json").dir(), PathBuf::from("."));
    }
}
