//! Exchange adapters of ohlcv-collector: everything that speaks an
//! exchange's protocol, and nothing that runs it.
//!
//! - [`source`]: the [`MarketSource`] interface every adapter implements,
//!   its live [`CandleStream`] and [`ExchangeError`];
//! - [`registry`]: which exchanges this build has an adapter for, which
//!   intervals each serves, and the factory that makes one from its config;
//! - [`simulated`]: the deterministic in-process exchange;
//! - [`binance_futures`], [`bybit_futures`], [`okx_futures`]: the real
//!   exchanges, each a folder of pure protocol code (`wire` payload types,
//!   `rest` and `ws` encoding and decoding, unit-tested on the documented
//!   payloads) and an `adapter` that puts it on the shared networking;
//! - `net` (private): what the real adapters share: TLS with the system's
//!   trust roots, one REST budget per exchange, and the live connection
//!   manager (split, subscribe, keep alive, watch, replace, reconnect).
//!
//! This crate depends on `ohlcv-domain` only, so the compiler enforces that
//! exchange code never imports actor, gateway or storage code. Keeping
//! connections up is the adapter's (each exchange has its own keep-alive
//! and limits); history sync, gap filling, integrity checks, heartbeats
//! and forwarding are the datasource actor's (crate `ohlcv-actors`), done
//! the same way for every adapter.

pub mod binance_futures;
pub mod bybit_futures;
mod fast_json;
pub(crate) mod net;
pub mod okx_futures;
pub mod registry;
pub mod simulated;
pub mod source;

pub use source::{CandleStream, ExchangeError, LiveEvent, MarketSource};
