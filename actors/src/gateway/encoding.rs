//! How messages travel on one WebSocket: JSON text frames (the default,
//! and the seed's) or MessagePack binary frames with the same shapes.
//!
//! A client asks for MessagePack with `/ws?format=msgpack` or by offering
//! the subprotocol `msgpack` (`new WebSocket(url, ["msgpack"])`); the
//! subprotocol `json` asks for JSON. The server answers with the
//! subprotocol it chose when the client offered one, as RFC 6455 wants.
//! Whatever the session's encoding, a client may send either: text frames
//! are read as JSON, binary frames as MessagePack.
//!
//! MessagePack maps carry the field names (`rmp_serde::to_vec_named`), so
//! a message decodes to the same object in both encodings.

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;

use super::errors::ApiError;

/// The encoding of one WebSocket session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON in text frames.
    Json,
    /// MessagePack in binary frames.
    MessagePack,
}

/// One WebSocket frame's payload, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame (JSON).
    Text(ByteString),
    /// A binary frame (MessagePack).
    Binary(Bytes),
}

impl Frame {
    /// Bytes on the wire (without the frame header).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(text) => text.len(),
            Frame::Binary(bytes) => bytes.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The subprotocol names a client can offer.
const JSON_PROTOCOL: &str = "json";
const MESSAGE_PACK_PROTOCOL: &str = "msgpack";

impl Encoding {
    /// The encoding a WebSocket upgrade asks for, and the subprotocol to
    /// echo in the answer (if the client offered one we speak). The query's
    /// `format` wins over the subprotocols.
    ///
    /// # Errors
    /// 400 `bad_format` for a `format` other than `json` or `msgpack`.
    pub fn negotiate(
        format: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(Encoding, Option<&'static str>), ApiError> {
        let offered: Vec<String> = headers
            .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let echo = |name: &'static str| offered.iter().any(|o| o == name).then_some(name);
        let encoding = match format {
            Some("json") => Encoding::Json,
            Some("msgpack") => Encoding::MessagePack,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "bad_format",
                    format!("format: {other:?} is not json or msgpack"),
                ))
            }
            None if echo(MESSAGE_PACK_PROTOCOL).is_some() => Encoding::MessagePack,
            None => Encoding::Json,
        };
        let protocol = match encoding {
            Encoding::Json => echo(JSON_PROTOCOL),
            Encoding::MessagePack => echo(MESSAGE_PACK_PROTOCOL),
        };
        Ok((encoding, protocol))
    }

    /// `value` as one frame of this encoding.
    ///
    /// # Errors
    /// Only for a value that is not representable (a map with non-string
    /// keys in JSON); our messages always are.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Frame, EncodeError> {
        match self {
            Encoding::Json => Ok(Frame::Text(ByteString::from(
                serde_json::to_string(value).map_err(|e| EncodeError(e.to_string()))?,
            ))),
            Encoding::MessagePack => Ok(Frame::Binary(Bytes::from(
                rmp_serde::to_vec_named(value).map_err(|e| EncodeError(e.to_string()))?,
            ))),
        }
    }
}

/// A message that could not be encoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message not encodable: {0}")]
pub struct EncodeError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};

    fn offering(protocols: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocols).unwrap(),
        );
        headers
    }

    #[test]
    fn the_query_or_the_subprotocol_chooses_the_encoding() {
        let none = HeaderMap::new();
        assert_eq!(
            Encoding::negotiate(None, &none).unwrap(),
            (Encoding::Json, None)
        );
        assert_eq!(
            Encoding::negotiate(Some("msgpack"), &none).unwrap(),
            (Encoding::MessagePack, None)
        );
        assert_eq!(
            Encoding::negotiate(None, &offering("x, msgpack")).unwrap(),
            (Encoding::MessagePack, Some("msgpack"))
        );
        assert_eq!(
            Encoding::negotiate(None, &offering("json")).unwrap(),
            (Encoding::Json, Some("json"))
        );
        assert_eq!(
            Encoding::negotiate(Some("json"), &offering("msgpack, json")).unwrap(),
            (Encoding::Json, Some("json"))
        );
        let error = Encoding::negotiate(Some("xml"), &none).unwrap_err();
        assert_eq!(error.body().code, "bad_format");
    }

    #[test]
    fn both_encodings_carry_the_same_object() {
        let value = serde_json::json!({"type":"log","data":{"message":"hi","n":[1,2.5,null]}});
        let Frame::Binary(packed) = Encoding::MessagePack.encode(&value).unwrap() else {
            panic!("MessagePack is binary")
        };
        let back: serde_json::Value = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(back, value);
        let Frame::Text(text) = Encoding::Json.encode(&value).unwrap() else {
            panic!("JSON is text")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
