//! Datasources: one actor per enabled exchange, driving its adapter (a
//! [`MarketSource`](ohlcv_exchanges::MarketSource) from `ohlcv-exchanges`).
//!
//! A [`Datasource`] connects its exchange's live stream first, then syncs
//! each series' history over REST (bootstrap when nothing is stored, gap
//! fill from the newest stored candle otherwise), so that no candle falls
//! between history and live data. It forwards every live update to storage
//! and to UI clients, watches for silent streams, reconnects with backoff
//! and jitter, and fills over REST every gap the live stream leaves (a
//! disconnect, a missed close, a blocked thread).

mod actor;
mod series;

#[cfg(test)]
mod tests;

pub use actor::{Datasource, DatasourceDeps, DatasourceSettings, ReloadSettings, StopDatasource};
