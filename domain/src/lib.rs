//! Domain types shared by every layer of ohlcv-collector.
//!
//! This crate owns the vocabulary ([`Candle`], [`SeriesKey`], [`ExchangeId`],
//! [`Interval`], [`Symbol`]), the validated configuration ([`config`]) and
//! the JSON parser that every input goes through ([`json`]).
//! It depends on nothing but serde, so storage, exchange adapters, actors and
//! the binary can all share it without depending on each other.

pub mod candle;
pub mod config;
pub mod exchange;
pub mod interval;
pub mod json;
pub mod symbol;
pub mod time;

pub use candle::{Candle, SeriesKey};
pub use exchange::ExchangeId;
pub use interval::Interval;
pub use symbol::Symbol;
