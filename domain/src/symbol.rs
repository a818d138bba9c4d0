//! Normalised instrument symbols (`BTCUSDT`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shortest symbol accepted.
pub(crate) const MIN_LEN: usize = 2;
/// Longest symbol accepted; the longest listed futures symbols are ~20 characters.
pub(crate) const MAX_LEN: usize = 30;

/// A normalised symbol: 2 to 30 characters of `A-Z` and `0-9` (`BTCUSDT`,
/// `1000PEPEUSDT`), the same for every exchange.
///
/// Backed by an `Arc<str>` because every candle carries its symbol and is
/// cloned on its way to storage and to each UI client.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

/// Why a string is not a symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a symbol like BTCUSDT (2 to 30 characters, A-Z and 0-9 only)")]
pub struct InvalidSymbol(pub String);

impl Symbol {
    /// Validates and wraps `s`.
    ///
    /// # Errors
    /// [`InvalidSymbol`] when `s` is empty, too long, or holds anything but
    /// upper-case ASCII letters and digits.
    pub fn new(s: &str) -> Result<Self, InvalidSymbol> {
        let valid = (MIN_LEN..=MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if valid {
            Ok(Symbol(Arc::from(s)))
        } else {
            Err(InvalidSymbol(s.to_owned()))
        }
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl FromStr for Symbol {
    type Err = InvalidSymbol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Symbol::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normalised_symbols_only() {
        for ok in ["BTCUSDT", "1000PEPEUSDT", "ETHUSDC", "AB"] {
            assert_eq!(Symbol::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "B",
            "btcusdt",
            "BTC/USDT",
            "BTC-USDT-SWAP",
            " BTCUSDT",
            &"A".repeat(31),
        ] {
            assert!(Symbol::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Symbol>("\"BTCUSDT\"").is_ok());
        let err = serde_json::from_str::<Symbol>("\"BTC/USDT\"").unwrap_err();
        assert!(
            err.to_string().contains("not a symbol like BTCUSDT"),
            "{err}"
        );
    }
}
