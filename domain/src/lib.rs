//! Domain types shared by every layer of ohlcv-collector.
//!
//! This crate owns the vocabulary ([`Candle`], [`SeriesKey`], [`ExchangeId`],
//! [`Interval`], [`Symbol`]), the validated configuration ([`config`]),
//! the JSON parser that every input goes through ([`json`]) and the way
//! every layer prints an error with its causes ([`ErrorChain`]).
//! It depends on nothing but serde, so storage, exchange adapters, actors and
//! the binary can all share it without depending on each other.

pub mod candle;
pub mod config;
pub mod error_chain;
pub mod exchange;
pub mod interval;
pub mod json;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod symbol;
pub mod time;

pub use candle::{Candle, SeriesKey};
pub use error_chain::ErrorChain;
pub use exchange::ExchangeId;
pub use interval::Interval;
pub use symbol::Symbol;
