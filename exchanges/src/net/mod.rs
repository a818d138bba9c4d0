//! Networking shared by the real exchange adapters: TLS with the system's
//! trust roots ([`tls`]), REST with one budget per exchange ([`http`],
//! [`budget`]) and live WebSocket connections that keep and mend
//! themselves ([`live`]). The adapters only add what their exchange
//! documents: URLs, messages, decoding and limits.

pub(crate) mod budget;
pub(crate) mod exchange;
pub(crate) mod http;
pub(crate) mod live;
pub(crate) mod tls;
