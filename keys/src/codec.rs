//! The one place that talks to bincode.
//!
//! Every byte string that comes from outside (a file, a peer, a relay) is decoded here, with an
//! explicit size limit, fixed-width integers and trailing bytes rejected. bincode 1.3's
//! `deserialize` without a limit lets a four-byte length prefix ask for gigabytes; with a limit
//! the decoder refuses before allocating. Other crates call [`encode`] and [`decode`] and never
//! name bincode themselves, so a future format change happens in one file.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Why a byte string could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CodecError {
    /// The input is larger than the limit for its kind.
    #[error("input is {len} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The limit that applied.
        limit: u64,
    },
    /// The bytes do not form a valid value (truncated, bad tag, bad UTF-8, trailing bytes, or a
    /// length prefix that would exceed the limit).
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

/// Encodes `value` in the canonical form (fixed-width little-endian integers, u64 length prefixes).
///
/// Fails only if `value` encodes to more than `limit` bytes.
pub fn encode<T: Serialize>(value: &T, limit: u64) -> Result<Vec<u8>, CodecError> {
    options(limit)
        .serialize(value)
        .map_err(|error| match *error {
            bincode::ErrorKind::SizeLimit => CodecError::TooLarge {
                len: usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
                limit,
            },
            other => CodecError::Malformed(other.to_string()),
        })
}

/// Decodes exactly one `T` from `bytes`, refusing inputs over `limit` bytes, any length prefix that
/// would allocate past `limit`, and any byte left over after the value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    if bytes.len() as u64 > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    options(limit)
        .deserialize(bytes)
        .map_err(|error| CodecError::Malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let value = (7u32, String::from("quick freeze"), vec![1u8, 2, 3]);
        let bytes = encode(&value, 1024).expect("fits");
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&bytes, 1024), Ok(value));
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = encode(&5u64, 64).expect("fits");
        bytes.push(0);
        assert!(matches!(
            decode::<u64>(&bytes, 64),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // A Vec<u8> whose length prefix claims 2^60 bytes.
        let bytes = (1u64 << 60).to_le_bytes();
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, 4096),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_input_refused() {
        let bytes = vec![0u8; 65];
        assert_eq!(
            decode::<Vec<u8>>(&bytes, 64),
            Err(CodecError::TooLarge { len: 65, limit: 64 })
        );
    }

    #[test]
    fn encode_over_limit_fails() {
        assert!(matches!(
            encode(&vec![0u8; 100], 50),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
