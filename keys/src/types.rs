//! Small value types shared by the roster and the wire format: timestamps, country codes,
//! 64-byte signatures and X25519 public keys.
//!
//! Each serializes compactly for bincode (fixed bytes, integers) and readably for TOML/JSON
//! (RFC 3339 times, `DE`, hex), by asking the serializer whether it is human readable. One struct
//! therefore serves both the file a person edits and the canonical bytes that get signed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time (for binaries; the protocol core is always handed `now`).
    pub fn now() -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + milliseconds`, saturating.
    pub fn plus_ms(self, milliseconds: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(milliseconds))
    }

    /// `self - earlier` in milliseconds, or 0 when `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The latest time RFC 3339 can express (9999-12-31T23:59:59.999Z).
    pub const MAX_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    /// RFC 3339 text, seconds precision, UTC. Times past year 9999 (only ever seen in hostile
    /// input) print as a marker instead of panicking inside the formatter.
    pub fn to_rfc3339(self) -> String {
        if self > Timestamp::MAX_RFC3339 {
            return format!("after-year-9999({}ms)", self.0);
        }
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_seconds(time).to_string()
    }

    /// Parses RFC 3339 (`2026-11-23T03:00:00Z`).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|error| {
            format!("`{text}` is not an RFC 3339 time such as 2026-11-23T03:00:00Z: {error}")
        })?;
        let since_epoch = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("`{text}` is before 1970"))?;
        Ok(Timestamp(u64::try_from(since_epoch.as_millis()).map_err(
            |_| format!("`{text}` is too far in the future"),
        )?))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Timestamp::parse_rfc3339(&text).map_err(de::Error::custom)
        } else {
            u64::deserialize(deserializer).map(Timestamp)
        }
    }
}

/// ISO 3166-1 alpha-2 codes currently assigned.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI \
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// All assigned ISO 3166-1 alpha-2 codes, in order.
pub fn iso_country_codes() -> impl Iterator<Item = &'static str> {
    ISO_3166_ALPHA2.split_whitespace()
}

/// An ISO 3166-1 alpha-2 country code, validated against the assigned codes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses and validates a code; accepts lower case.
    pub fn parse(text: &str) -> Result<CountryCode, String> {
        let upper = text.trim().to_ascii_uppercase();
        if upper.len() == 2 && iso_country_codes().any(|code| code == upper) {
            let bytes = upper.as_bytes();
            Ok(CountryCode([bytes[0], bytes[1]]))
        } else {
            Err(format!(
                "`{text}` is not an ISO 3166-1 alpha-2 country code (two letters, such as DE, FR, JP)"
            ))
        }
    }

    /// The two letters.
    pub fn as_str(&self) -> &str {
        // Only ever constructed from validated ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl std::str::FromStr for CountryCode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CountryCode::parse(text)
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.as_str())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            CountryCode::parse(&text).map_err(de::Error::custom)
        } else {
            let bytes = <[u8; 2]>::deserialize(deserializer)?;
            let text = std::str::from_utf8(&bytes).map_err(de::Error::custom)?;
            CountryCode::parse(text).map_err(de::Error::custom)
        }
    }
}

/// Serde for fixed byte arrays: raw bytes in binary formats, hex in text formats.
macro_rules! hex_bytes_type {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(text.trim(), &mut bytes)
                    .map_err(|_| format!("`{}` is not {} hex digits", text, 2 * $len))?;
                Ok($name(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&hex::encode(self.0))
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct BytesVisitor;
                impl<'de> Visitor<'de> for BytesVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes", $len)
                    }
                    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<$name, E> {
                        let array: [u8; $len] = bytes
                            .try_into()
                            .map_err(|_| E::invalid_length(bytes.len(), &self))?;
                        Ok($name(array))
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(BytesVisitor)
                } else {
                    deserializer.deserialize_bytes(BytesVisitor)
                }
            }
        }
    };
}

hex_bytes_type!(
    /// An Ed25519 signature.
    Signature,
    64
);
hex_bytes_type!(
    /// An X25519 public key (the key envelopes are sealed to).
    EncryptionKey,
    32
);
hex_bytes_type!(
    /// A SHA-256 digest.
    Digest32,
    32
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_249_country_codes_sorted_and_unique() {
        let codes: Vec<&str> = iso_country_codes().collect();
        assert_eq!(codes.len(), 249);
        assert!(codes.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn country_validation() {
        assert_eq!(CountryCode::parse("de").expect("valid").as_str(), "DE");
        assert!(CountryCode::parse("XX").is_err());
        assert!(CountryCode::parse("DEU").is_err());
        assert!(CountryCode::parse("").is_err());
    }

    #[test]
    fn far_future_timestamp_prints_without_panic() {
        assert!(Timestamp(u64::MAX)
            .to_rfc3339()
            .starts_with("after-year-9999"));
        assert_eq!(Timestamp::MAX_RFC3339.to_rfc3339(), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn timestamp_text_round_trip() {
        let time = Timestamp::parse_rfc3339("2026-11-23T03:00:00Z").expect("parse");
        assert_eq!(time.to_rfc3339(), "2026-11-23T03:00:00Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn signature_binary_and_text() {
        let signature = Signature([7u8; 64]);
        let bytes = crate::codec::encode(&signature, 1024).expect("encode");
        assert_eq!(bytes.len(), 8 + 64);
        assert_eq!(
            crate::codec::decode::<Signature>(&bytes, 1024),
            Ok(signature)
        );
        let json = format!("\"{}\"", hex::encode([7u8; 64]));
        assert_eq!(json.trim_matches('"').parse::<Signature>(), Ok(signature));
    }
}
