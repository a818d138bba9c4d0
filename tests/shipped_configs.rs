//! The configurations shipped with the project load as the collector
//! loads them (domain rules, then the adapter registry).

use ohlcv_domain::config::ConfigStore;
use ohlcv_domain::{ExchangeId, Interval};

fn load(path: &str) -> ohlcv_domain::config::Config {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    ohlcv_supervisors::load_config(&ConfigStore::new(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_default_config_collects_btc_and_eth_1m_from_the_three_exchanges() {
    let config = load("config.json");
    let enabled: Vec<ExchangeId> = config.enabled_exchanges().map(|(id, _)| id).collect();
    assert_eq!(
        enabled,
        [
            ExchangeId::BinanceFutures,
            ExchangeId::BybitFutures,
            ExchangeId::OkxFutures
        ]
    );
    assert_eq!(config.intervals, [Interval::M1]);
    for (_, exchange) in config.enabled_exchanges() {
        let symbols: Vec<&str> = exchange.symbols.iter().map(|s| s.as_str()).collect();
        assert_eq!(symbols, ["BTCUSDT", "ETHUSDT"]);
        // The real public endpoints: no override.
        assert!(exchange.rest_url.is_none() && exchange.ws_url.is_none());
    }
}

#[test]
fn the_offline_example_runs_the_simulated_exchange_only() {
    let config = load("examples/simulated.json");
    let enabled: Vec<ExchangeId> = config.enabled_exchanges().map(|(id, _)| id).collect();
    assert_eq!(enabled, [ExchangeId::Simulated]);
}
