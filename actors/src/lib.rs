//! Actors of ohlcv-collector.
//!
//! - [`datasource`]: one `Datasource` actor per enabled exchange, on its own
//!   arbiter, driving that exchange's adapter (a [`MarketSource`] of crate
//!   `ohlcv-exchanges`);
//! - [`storage`]: the thread that owns SQLite;
//! - [`monitor`]: heartbeats, worker metrics, system info;
//! - [`metrics`]: what each worker reports in its heartbeat;
//! - [`gateway`]: HTTP API and WebSocket for UI clients;
//! - [`lifecycle`]: what every supervised child shares (identity, death
//!   reporting, heartbeats);
//! - [`control`]: the commands the gateway sends to the supervisor.
//!
//! [`MarketSource`]: ohlcv_exchanges::MarketSource

use std::time::Duration;

pub mod control;
pub mod datasource;
pub mod gateway;
pub mod lifecycle;
pub mod metrics;
pub mod monitor;
pub mod storage;

/// How often every child reports that it is alive (seed 004: every 3 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Heartbeats a child may miss before the monitor reports it stalled.
pub const MISSED_HEARTBEATS_LIMIT: u32 = 3;
