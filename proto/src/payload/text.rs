//! Serde adapters for the two forms of one payload: text in human-readable formats (the TOML forms
//! an officer edits), native values in the binary encoding that is sealed into an envelope.
//!
//! `types` names them in `#[serde(with = ...)]`; the wire bytes do not change with them, only how
//! the same value is written in a form.

/// `Option<T>` written as text in human-readable formats, where a blank string means "none" (so a
/// form can say `custodian = ""`), and natively in binary formats.
pub(super) mod optional_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub(in crate::payload) fn serialize<T, S>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error>
    where
        T: Serialize + Display,
        S: Serializer,
    {
        if serializer.is_human_readable() {
            match value {
                Some(value) => serializer.serialize_some(&value.to_string()),
                None => serializer.serialize_none(),
            }
        } else {
            value.serialize(serializer)
        }
    }

    pub(in crate::payload) fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de> + FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        if deserializer.is_human_readable() {
            match Option::<String>::deserialize(deserializer)? {
                Some(text) if !text.trim().is_empty() => {
                    text.parse().map(Some).map_err(de::Error::custom)
                }
                _ => Ok(None),
            }
        } else {
            Option::<T>::deserialize(deserializer)
        }
    }
}

/// A [`MessageId`](crate::MessageId) as 32 hex digits in human-readable formats, 16 bytes in
/// binary ones.
pub(super) mod id_text {
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use crate::MessageId;

    pub(in crate::payload) fn serialize<S: Serializer>(
        id: &MessageId,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(id)
        } else {
            id.serialize(serializer)
        }
    }

    pub(in crate::payload) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MessageId, D::Error> {
        if deserializer.is_human_readable() {
            String::deserialize(deserializer)?
                .parse()
                .map_err(de::Error::custom)
        } else {
            MessageId::deserialize(deserializer)
        }
    }
}

/// Bytes as hex in human-readable formats, as a length-prefixed byte string in binary ones.
pub(super) mod hex_bytes {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(in crate::payload) fn serialize<S: Serializer>(
        bytes: &[u8],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(in crate::payload) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(digits).map_err(|error| de::Error::custom(format!("not hex: {error}")))
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}
