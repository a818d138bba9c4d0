//! Exchange adapters of ohlcv-collector: everything that speaks an
//! exchange's protocol, and nothing that runs it.
//!
//! - [`source`]: the [`MarketSource`] interface every adapter implements,
//!   its live [`CandleStream`] and [`ExchangeError`];
//! - [`registry`]: which exchanges this build has an adapter for, which
//!   intervals each serves, and the factory that makes one from its config;
//! - [`simulated`]: the deterministic in-process exchange;
//! - [`binance_futures`]: the protocol code of Binance USDT-M futures (wire
//!   types, REST and stream encoding and decoding), not yet networked nor
//!   in the registry.
//! - [`okx_futures`]: the OKX v5 perpetual swap protocol (wire types, REST
//!   paging, WebSocket frames), pure code with no networking yet and not
//!   registered as an adapter.
//! - [`bybit_futures`]: the Bybit v5 linear protocol code (payloads, REST
//!   and WebSocket messages, decoding); not registered yet, it has no
//!   [`MarketSource`] implementation until its networking lands.
//!
//! This crate depends on `ohlcv-domain` only, so the compiler enforces that
//! exchange code never imports actor, gateway or storage code. Reconnects,
//! gap filling, heartbeats and forwarding are the datasource actor's job
//! (crate `ohlcv-actors`), done the same way for every adapter.

pub mod binance_futures;
pub mod bybit_futures;
pub(crate) mod net;
pub mod okx_futures;
pub mod registry;
pub mod simulated;
pub mod source;

pub use source::{CandleStream, ExchangeError, LiveEvent, MarketSource};
