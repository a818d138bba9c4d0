//! Exchange identifiers: the ids used in `config.json`, URLs and the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One exchange (market) the collector knows of.
///
/// The string form (`binance_futures`, …) is the contract users see in the
/// config file, the HTTP routes and the `exchange` column of the database.
/// Whether this build has an adapter for it, and so whether it can be
/// enabled, is the adapter registry's answer (crate `ohlcv-exchanges`), not
/// the domain's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExchangeId {
    /// Binance USDT-M perpetual futures.
    BinanceFutures,
    /// Bybit v5 linear perpetuals.
    BybitFutures,
    /// OKX v5 SWAP perpetuals.
    OkxFutures,
    /// A deterministic in-process exchange, for trying the collector out and
    /// for testing it without a network.
    Simulated,
}

impl ExchangeId {
    /// Every exchange id, in the order they are listed to users.
    pub const ALL: [ExchangeId; 4] = [
        ExchangeId::BinanceFutures,
        ExchangeId::BybitFutures,
        ExchangeId::OkxFutures,
        ExchangeId::Simulated,
    ];

    /// The id as written in config files, routes and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExchangeId::BinanceFutures => "binance_futures",
            ExchangeId::BybitFutures => "bybit_futures",
            ExchangeId::OkxFutures => "okx_futures",
            ExchangeId::Simulated => "simulated",
        }
    }
}

impl fmt::Display for ExchangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no known exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown exchange {0:?}: expected one of binance_futures, bybit_futures, okx_futures, simulated")]
pub struct UnknownExchange(pub String);

impl FromStr for ExchangeId {
    type Err = UnknownExchange;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExchangeId::ALL
            .into_iter()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| UnknownExchange(s.to_owned()))
    }
}

impl Serialize for ExchangeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Deserialised through [`FromStr`] (not as an enum) so that error paths
/// name the map key, e.g. `exchanges.simulated.symbols[1]`.
impl<'de> Deserialize<'de> for ExchangeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_form_round_trips_for_every_id() {
        for id in ExchangeId::ALL {
            assert_eq!(id.as_str().parse::<ExchangeId>(), Ok(id));
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        }
        assert!("binance".parse::<ExchangeId>().is_err());
    }
}
