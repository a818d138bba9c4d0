//! The one JSON parser of every document the collector accepts: the config
//! file and every HTTP request body.
//!
//! serde_json, like most parsers, keeps the last of two equal keys of an
//! object, so `{"symbols":["BTCUSDT"],"symbols":["ETHUSDT"]}` silently means
//! `["ETHUSDT"]`. RFC 8259 leaves the meaning of such a document to each
//! parser, and I-JSON (RFC 7493) forbids it; we refuse it, naming the key,
//! so that a hand-edited file or a client's body never means something
//! other than what its author reads. The typed structs would catch a
//! repeated field name on their own (serde's `duplicate field`), but not a
//! repeated key of a map such as `exchanges`, nor anything in a body that a
//! route reads as a plain [`Value`].
//!
//! [`from_str`] parses a text and says where it failed as a [`JsonError`];
//! [`UniqueKeys`] is the same parser for code that leaves the parsing to a
//! framework (actix-web's `web::Json<UniqueKeys>`, which keeps its own body
//! limit and content-type check), with the path at the start of the
//! message.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// The reason given for a repeated key, after its path.
const DUPLICATE_KEY: &str = "key listed twice";

/// Why a text was refused by [`from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct JsonError {
    /// Path of the value where parsing stopped, written as the config
    /// errors write keys (`exchanges.simulated.symbols`, `symbols[2]`), or
    /// `.` for the document itself. For a repeated key, the path of its
    /// second occurrence.
    pub path: String,
    /// What is wrong, with serde_json's line and column.
    pub reason: String,
}

/// Parses `text` as one JSON document into a [`Value`], refusing an object
/// that lists a key twice.
///
/// # Errors
/// [`JsonError`] naming the path where the text is not JSON or repeats a
/// key.
pub fn from_str(text: &str) -> Result<Value, JsonError> {
    let failed_at = FailedAt::default();
    let mut de = serde_json::Deserializer::from_str(text);
    ValueSeed::root(&failed_at)
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|error| JsonError {
            path: failed_at.take().unwrap_or_else(|| ".".to_owned()),
            reason: error.to_string(),
        })
}

/// A JSON value parsed as [`from_str`] parses it, for code that lets a
/// framework run the deserialiser: a repeated key fails deserialisation,
/// and an error below the top level starts with its path
/// (`exchanges.simulated.symbols: key listed twice at line 1 column 60`).
///
/// Only meaningful for JSON: it relies on the deserialiser describing
/// itself (`deserialize_any`).
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueKeys(pub Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let failed_at = FailedAt::default();
        ValueSeed::root(&failed_at)
            .deserialize(deserializer)
            .map(UniqueKeys)
            .map_err(|error| match failed_at.take() {
                Some(path) if path != "." => de::Error::custom(format_args!("{path}: {error}")),
                _ => error,
            })
    }
}

/// Where in the document a value sits, as a list linked through the stack
/// of the parse: nothing is allocated unless an error needs the path.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("."),
            Path::Key(parent, key) => {
                if !matches!(parent, Path::Root) {
                    write!(f, "{parent}.")?;
                }
                f.write_str(key)
            }
            Path::Index(parent, index) => {
                if !matches!(parent, Path::Root) {
                    write!(f, "{parent}")?;
                }
                write!(f, "[{index}]")
            }
        }
    }
}

/// The path of the innermost value that failed: the first to be recorded,
/// since an error is recorded as it travels outwards.
#[derive(Default)]
struct FailedAt(RefCell<Option<String>>);

impl FailedAt {
    fn record(&self, path: &Path<'_>) {
        let mut slot = self.0.borrow_mut();
        if slot.is_none() {
            *slot = Some(path.to_string());
        }
    }

    fn take(&self) -> Option<String> {
        self.0.borrow_mut().take()
    }
}

/// Parses the value at `path`.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    path: Path<'a>,
    failed_at: &'a FailedAt,
}

impl<'a> ValueSeed<'a> {
    fn root(failed_at: &'a FailedAt) -> Self {
        ValueSeed {
            path: Path::Root,
            failed_at,
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self).inspect_err(|_| {
            self.failed_at.record(&self.path);
        })
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity; serde_json maps them to null too.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        DeserializeSeed::deserialize(self, deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let item = ValueSeed {
                path: Path::Index(&self.path, items.len()),
                failed_at: self.failed_at,
            };
            match seq.next_element_seed(item)? {
                Some(value) => items.push(value),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = Path::Key(&self.path, &key);
            if object.contains_key(&key) {
                self.failed_at.record(&path);
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
            let value = map.next_value_seed(ValueSeed {
                path,
                failed_at: self.failed_at,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_without_repeated_keys_parse_as_serde_json_parses_them() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": {"a": []},
                       "big": 18446744073709551615}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(from_str(text).unwrap(), expected);
        assert_eq!(
            serde_json::from_str::<UniqueKeys>(text).unwrap(),
            UniqueKeys(expected)
        );
        // The same key in different objects is no repetition.
        assert_eq!(
            from_str(r#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#).unwrap(),
            json!({"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]})
        );
    }

    #[test]
    fn a_repeated_key_is_refused_naming_its_path() {
        let cases = [
            (
                r#"{"a": 1, "a": 1}"#,
                "a",
                "key listed twice at line 1 column 12",
            ),
            (
                r#"{"a": {"b": 1, "c": 2, "b": 3}}"#,
                "a.b",
                "key listed twice",
            ),
            (
                r#"{"a": [{"b": 1}, {"b": 1, "b": 1}]}"#,
                "a[1].b",
                "key listed twice",
            ),
            (r#"[{}, {"x": 0, "x": 0}]"#, "[1].x", "key listed twice"),
            // Equal after unescaping is equal.
            (r#"{"ab": 1, "a\u0062": 2}"#, "ab", "key listed twice"),
        ];
        for (text, path, reason) in cases {
            let error = from_str(text).unwrap_err();
            assert_eq!(error.path, path, "{text}");
            assert!(error.reason.starts_with(reason), "{text}: {error}");

            let framework = serde_json::from_str::<UniqueKeys>(text).unwrap_err();
            assert!(
                framework
                    .to_string()
                    .starts_with(&format!("{path}: {reason}")),
                "{text}: {framework}"
            );
        }
    }

    #[test]
    fn text_that_is_not_json_is_refused_where_it_breaks() {
        let cases = [
            ("", ".", "EOF while parsing a value"),
            ("not json", ".", "expected ident"),
            (r#"{"a": [1, 2, x]}"#, "a[2]", "expected value"),
            (r#"{"a": [1, 2,]}"#, "a", "trailing comma"),
            (r#"{"a": {"b": tru}}"#, "a.b", "expected ident"),
            ("{} {}", ".", "trailing characters"),
        ];
        for (text, path, reason) in cases {
            let error = from_str(text).unwrap_err();
            assert_eq!(error.path, path, "{text:?}");
            assert!(error.reason.starts_with(reason), "{text:?}: {error}");
            assert!(serde_json::from_str::<UniqueKeys>(text).is_err());
        }
        // At the top level the framework's message is serde_json's own.
        let framework = serde_json::from_str::<UniqueKeys>("not json").unwrap_err();
        assert_eq!(framework.to_string(), "expected ident at line 1 column 2");
    }
}
