//! OpenAPI schemas of the domain types the HTTP API shows (feature
//! `openapi`), for the gateway's `/openapi.json`.
//!
//! [`ExchangeId`], [`Interval`], [`Symbol`] and [`ApiToken`] serialise by
//! hand as strings, so a derived schema would describe their Rust shape
//! instead of their JSON; their schemas are written here from the same
//! constants their parsers use ([`ExchangeId::ALL`], [`Interval::ALL`], the
//! symbol length limits), so the document cannot drift from what the API
//! accepts. The config structs derive theirs where they are defined.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::config::{ApiToken, MIN_API_TOKEN_CHARS};
use crate::symbol::{MAX_LEN, MIN_LEN};
use crate::{ExchangeId, Interval, Symbol};

/// A string schema with a description and one example.
fn string(description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([example])
}

impl PartialSchema for ExchangeId {
    fn schema() -> RefOr<Schema> {
        string("An exchange id.", ExchangeId::BinanceFutures.as_str())
            .enum_values(Some(ExchangeId::ALL.map(ExchangeId::as_str)))
            .into()
    }
}

impl ToSchema for ExchangeId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExchangeId")
    }
}

impl PartialSchema for Interval {
    fn schema() -> RefOr<Schema> {
        string("A candle interval.", Interval::M1.as_str())
            .enum_values(Some(Interval::ALL.map(Interval::as_str)))
            .into()
    }
}

impl ToSchema for Interval {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Interval")
    }
}

impl PartialSchema for Symbol {
    fn schema() -> RefOr<Schema> {
        string(
            "A normalised symbol, the same for every exchange.",
            "BTCUSDT",
        )
        .min_length(Some(MIN_LEN))
        .max_length(Some(MAX_LEN))
        .pattern(Some("^[A-Z0-9]+$"))
        .into()
    }
}

impl ToSchema for Symbol {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Symbol")
    }
}

impl PartialSchema for ApiToken {
    fn schema() -> RefOr<Schema> {
        string(
            "The api_token: shown as \"***\"; posting \"***\" back keeps it.",
            "***",
        )
        .min_length(Some(MIN_API_TOKEN_CHARS))
        .into()
    }
}

impl ToSchema for ApiToken {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ApiToken")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn string_types_list_exactly_what_their_parsers_accept() {
        let exchanges = schema_of::<ExchangeId>();
        assert_eq!(exchanges["type"], "string");
        for value in exchanges["enum"].as_array().unwrap() {
            let text = value.as_str().unwrap();
            assert_eq!(text.parse::<ExchangeId>().unwrap().as_str(), text);
        }
        assert_eq!(
            exchanges["enum"].as_array().unwrap().len(),
            ExchangeId::ALL.len()
        );
        let intervals = schema_of::<Interval>();
        for value in intervals["enum"].as_array().unwrap() {
            let text = value.as_str().unwrap();
            assert_eq!(text.parse::<Interval>().unwrap().as_str(), text);
        }
        assert_eq!(
            intervals["enum"].as_array().unwrap().len(),
            Interval::ALL.len()
        );
        let symbol = schema_of::<Symbol>();
        let longest = "A".repeat(symbol["maxLength"].as_u64().unwrap() as usize);
        let shortest = "A".repeat(symbol["minLength"].as_u64().unwrap() as usize);
        assert!(Symbol::new(&longest).is_ok() && Symbol::new(&shortest).is_ok());
        assert!(Symbol::new(&format!("{longest}A")).is_err());
        assert!(Symbol::new(&shortest[1..]).is_err());
        assert_eq!(symbol["examples"], json!(["BTCUSDT"]));
    }
}
