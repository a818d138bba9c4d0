//! A broadcast message encoded once per encoding, shared by every client
//! that receives it.
//!
//! A candle update is also kept so that its `data` object can be cut out
//! without parsing: a batch of updates for one client (`{"type":"candles",
//! "data":[…]}`) is the concatenation of the shared encodings, never a new
//! serialisation per client.

use bytes::Bytes;
use bytestring::ByteString;

use super::encoding::{EncodeError, Encoding, Frame};
use super::protocol::{CandleMessage, ServerMessage};

/// JSON of a candle message around its data object.
const JSON_CANDLE_PREFIX: &str = r#"{"type":"candle","data":"#;
const JSON_CANDLES_PREFIX: &str = r#"{"type":"candles","data":["#;

/// A message encoded for the encodings its receivers use.
#[derive(Debug)]
pub struct SharedMessage {
    json: Option<ByteString>,
    msgpack: Option<Bytes>,
    /// For a candle update: where the data object starts in each encoding
    /// (JSON's ends one byte before the end, MessagePack's at the end).
    data_start: Option<(usize, usize)>,
}

impl SharedMessage {
    /// `message` encoded as JSON and/or MessagePack.
    ///
    /// # Errors
    /// If the message cannot be encoded (a bug: ours always can).
    pub fn new(message: &ServerMessage, json: bool, msgpack: bool) -> Result<Self, EncodeError> {
        if let ServerMessage::Candle(candle) = message {
            return SharedMessage::candle(candle, json, msgpack);
        }
        Ok(SharedMessage {
            json: json
                .then(|| text(Encoding::Json.encode(message)))
                .transpose()?,
            msgpack: msgpack
                .then(|| binary(Encoding::MessagePack.encode(message)))
                .transpose()?,
            data_start: None,
        })
    }

    /// A `candle` message, encoded so that its data object can be cut out.
    /// Byte for byte what [`SharedMessage::new`] of the same
    /// [`ServerMessage::Candle`] would give.
    ///
    /// # Errors
    /// If the candle cannot be encoded (a bug: ours always can).
    pub fn candle(candle: &CandleMessage, json: bool, msgpack: bool) -> Result<Self, EncodeError> {
        let json = json
            .then(|| -> Result<ByteString, EncodeError> {
                let data = serde_json::to_string(candle).map_err(|e| EncodeError(e.to_string()))?;
                let mut text = String::with_capacity(JSON_CANDLE_PREFIX.len() + data.len() + 1);
                text.push_str(JSON_CANDLE_PREFIX);
                text.push_str(&data);
                text.push('}');
                Ok(ByteString::from(text))
            })
            .transpose()?;
        let msgpack = msgpack
            .then(|| -> Result<Bytes, EncodeError> {
                let mut packed = msgpack_prefix("candle");
                rmp_serde::encode::write_named(&mut packed, candle)
                    .map_err(|e| EncodeError(e.to_string()))?;
                Ok(Bytes::from(packed))
            })
            .transpose()?;
        Ok(SharedMessage {
            json,
            msgpack,
            data_start: Some((JSON_CANDLE_PREFIX.len(), msgpack_prefix("candle").len())),
        })
    }

    /// The whole message as a frame of `encoding`, if it was encoded so.
    pub fn frame(&self, encoding: Encoding) -> Option<Frame> {
        match encoding {
            Encoding::Json => self.json.clone().map(Frame::Text),
            Encoding::MessagePack => self.msgpack.clone().map(Frame::Binary),
        }
    }

    /// Bytes of the message in `encoding` (0 if not encoded so).
    pub fn len(&self, encoding: Encoding) -> usize {
        match encoding {
            Encoding::Json => self.json.as_ref().map_or(0, |t| t.len()),
            Encoding::MessagePack => self.msgpack.as_ref().map_or(0, Bytes::len),
        }
    }

    /// Whether the message is empty in `encoding` (not encoded so).
    pub fn is_empty(&self, encoding: Encoding) -> bool {
        self.len(encoding) == 0
    }

    /// The data object of a candle update in JSON.
    fn json_data(&self) -> Option<&str> {
        let (start, _) = self.data_start?;
        let text = self.json.as_ref()?;
        text.get(start..text.len() - 1)
    }

    /// The data object of a candle update in MessagePack.
    fn msgpack_data(&self) -> Option<&[u8]> {
        let (_, start) = self.data_start?;
        self.msgpack.as_ref()?.get(start..)
    }
}

/// One frame holding several candle updates:
/// `{"type":"candles","data":[<candle data>, …]}` in `encoding`. Updates
/// not encoded so (none are: the broadcaster encodes for every receiver's
/// encoding) are left out.
pub fn candle_batch(encoding: Encoding, candles: &[std::sync::Arc<SharedMessage>]) -> Frame {
    match encoding {
        Encoding::Json => {
            let parts: Vec<&str> = candles.iter().filter_map(|c| c.json_data()).collect();
            let size: usize = parts.iter().map(|p| p.len() + 1).sum();
            let mut text = String::with_capacity(JSON_CANDLES_PREFIX.len() + size + 2);
            text.push_str(JSON_CANDLES_PREFIX);
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(part);
            }
            text.push_str("]}");
            Frame::Text(ByteString::from(text))
        }
        Encoding::MessagePack => {
            let parts: Vec<&[u8]> = candles.iter().filter_map(|c| c.msgpack_data()).collect();
            let mut packed = msgpack_prefix("candles");
            packed.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 5);
            // Writing to a Vec cannot fail; the count fits: it is a Vec's.
            let _ = rmp::encode::write_array_len(&mut packed, parts.len() as u32);
            for part in parts {
                packed.extend_from_slice(part);
            }
            Frame::Binary(Bytes::from(packed))
        }
    }
}

/// MessagePack of `{"type": <kind>, "data": ` (a two-entry map up to its
/// last value), as `rmp_serde` writes an adjacently tagged message.
fn msgpack_prefix(kind: &str) -> Vec<u8> {
    let mut packed = Vec::with_capacity(24);
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut packed, 2);
    let _ = rmp::encode::write_str(&mut packed, "type");
    let _ = rmp::encode::write_str(&mut packed, kind);
    let _ = rmp::encode::write_str(&mut packed, "data");
    packed
}

fn text(frame: Result<Frame, EncodeError>) -> Result<ByteString, EncodeError> {
    match frame? {
        Frame::Text(text) => Ok(text),
        Frame::Binary(_) => Err(EncodeError("JSON came out binary".into())),
    }
}

fn binary(frame: Result<Frame, EncodeError>) -> Result<Bytes, EncodeError> {
    match frame? {
        Frame::Binary(bytes) => Ok(bytes),
        Frame::Text(_) => Err(EncodeError("MessagePack came out as text".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ohlcv_domain::{ExchangeId, Interval, Symbol};
    use serde_json::{json, Value};

    fn candle(t: i64) -> CandleMessage {
        CandleMessage {
            exchange: ExchangeId::OkxFutures,
            symbol: Symbol::new("ETHUSDT").unwrap(),
            interval: Interval::M5,
            t,
            o: 3000.5,
            h: 3010.0,
            l: 2999.25,
            c: 3005.0,
            v: 12.5,
            closed: t == 0,
        }
    }

    fn parse(frame: Frame) -> Value {
        match frame {
            Frame::Text(text) => serde_json::from_str(&text).unwrap(),
            Frame::Binary(bytes) => rmp_serde::from_slice(&bytes).unwrap(),
        }
    }

    #[test]
    fn a_candle_is_encoded_as_the_generic_message_would_be() {
        for encoding in [Encoding::Json, Encoding::MessagePack] {
            let generic = encoding
                .encode(&ServerMessage::Candle(candle(300_000)))
                .unwrap();
            let shared = SharedMessage::candle(&candle(300_000), true, true).unwrap();
            assert_eq!(shared.frame(encoding).unwrap(), generic, "{encoding:?}");
        }
    }

    #[test]
    fn a_batch_concatenates_the_shared_encodings() {
        let updates: Vec<Arc<SharedMessage>> = [0, 300_000]
            .into_iter()
            .map(|t| Arc::new(SharedMessage::candle(&candle(t), true, true).unwrap()))
            .collect();
        let expected = json!({"type":"candles","data":[
            serde_json::to_value(candle(0)).unwrap(),
            serde_json::to_value(candle(300_000)).unwrap(),
        ]});
        for encoding in [Encoding::Json, Encoding::MessagePack] {
            assert_eq!(
                parse(candle_batch(encoding, &updates)),
                expected,
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn only_the_encodings_asked_for_are_made() {
        let shared =
            SharedMessage::new(&ServerMessage::SystemInfo(json!({"cpu":1})), false, true).unwrap();
        assert!(shared.frame(Encoding::Json).is_none());
        assert_eq!(
            parse(shared.frame(Encoding::MessagePack).unwrap()),
            json!({"type":"system_info","data":{"cpu":1}})
        );
    }
}
