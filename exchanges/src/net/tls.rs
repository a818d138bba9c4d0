//! TLS for every exchange connection: rustls with the ring provider and
//! the system's trust roots.
//!
//! The roots come from the system store through `rustls-native-certs`,
//! which honours `SSL_CERT_FILE` and `SSL_CERT_DIR` the way curl and
//! OpenSSL do: a user behind a TLS-inspecting proxy points them at the
//! proxy's CA, and the tests point them at a certificate made for a
//! loopback fake. They are read once per process.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use crate::source::ExchangeError;

/// The client configuration shared by REST and WebSocket connections,
/// built on first use.
///
/// # Errors
/// [`ExchangeError::Connect`] when no trust root could be loaded (no
/// `ca-certificates` and no usable `SSL_CERT_FILE`): every `https://` or
/// `wss://` connection would fail, so the error says what to install.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, ExchangeError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(build)
        .clone()
        .map_err(ExchangeError::Connect)
}

fn build() -> Result<Arc<ClientConfig>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "no TLS trust roots found (install the ca-certificates package or set \
             SSL_CERT_FILE){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    for error in &loaded.errors {
        tracing::warn!(%error, "some TLS trust roots could not be loaded");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: REST and the WebSocket upgrade both speak it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
