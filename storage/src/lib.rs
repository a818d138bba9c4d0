//! Candle store of ohlcv-collector: SQLite schema, migrations, batch upserts,
//! queries and retention ([`Database`]), plus the latest-wins in-memory queue
//! the storage thread keeps between batch writes ([`CandleQueue`],
//! [`merge_overlay`]), and the [`rescue`] file for candles the database
//! refused at shutdown.
//!
//! Depends on the domain types only. Everything here is blocking and meant to
//! run on the one dedicated storage thread that owns the connection; the actor
//! wrapping it lives in `ohlcv-actors`.

pub mod checkpoint;
pub mod database;
pub mod error;
pub mod query;
pub mod queue;
pub mod rescue;

pub use checkpoint::{Checkpointer, WalProgress};
pub use database::{
    Database, Hole, SeriesCompleteness, SeriesSummary, APPLICATION_ID, SCHEMA_VERSION,
};
pub use error::StorageError;
pub use query::CandleQuery;
pub use queue::{merge_overlay, CandleQueue};
