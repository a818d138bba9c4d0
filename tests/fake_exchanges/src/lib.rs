//! Fake Binance USDT-M futures, Bybit linear and OKX swap servers on
//! 127.0.0.1 (REST and WebSocket on one port), for the collector's tests
//! and load harness.
