//! Strict `application/x-www-form-urlencoded` parsing for the console's forms.
//!
//! Unlike lossy decoders, a body whose bytes or percent-escapes are not UTF-8 is refused with an
//! error that says so, instead of being turned silently into replacement characters that then
//! travel to another country inside a signed request. Bodies are bounded by the router
//! ([`super::MAX_FORM_BYTES`]); here the number of fields and each value are bounded too.

use std::collections::HashMap;

/// Most fields one form may carry.
pub const MAX_FIELDS: usize = 128;

/// A parsed form: each name with its last value (the console's forms never repeat a name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormData {
    values: HashMap<String, String>,
}

impl FormData {
    /// Parses a urlencoded body; refuses bad UTF-8, bad escapes and too many fields.
    pub fn parse(body: &[u8]) -> Result<FormData, String> {
        let text = std::str::from_utf8(body).map_err(|_| {
            "the form is not valid UTF-8; send it from the console's own page".to_string()
        })?;
        let mut values = HashMap::new();
        for (count, pair) in text.split('&').filter(|pair| !pair.is_empty()).enumerate() {
            if count >= MAX_FIELDS {
                return Err(format!("the form has more than {MAX_FIELDS} fields"));
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            values.insert(decode(name)?, decode(value)?);
        }
        Ok(FormData { values })
    }

    /// The value of `name`, or "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// The value of `name` when present.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Sets a value (tests and re-rendering).
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => out.push(high * 16 + low),
                    _ => return Err("the form has a malformed %-escape".to_string()),
                }
                index += 3;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| "the form is not valid UTF-8; send it from the console's own page".to_string())
}

/// Encodes one value for a urlencoded body or a query string.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_round_trips() {
        let form = FormData::parse(b"a=1&b=two+words&c=%C3%A9t%C3%A9&d").expect("parse");
        assert_eq!(form.get("a"), "1");
        assert_eq!(form.get("b"), "two words");
        assert_eq!(form.get("c"), "été");
        assert_eq!(form.opt("d"), Some(""));
        assert_eq!(form.opt("e"), None);
        let text = "x=1&y=ü +%";
        let encoded = format!("v={}", encode(text));
        assert_eq!(
            FormData::parse(encoded.as_bytes()).expect("parse").get("v"),
            text
        );
    }

    #[test]
    fn refuses_bad_utf8_and_escapes() {
        assert!(FormData::parse(b"a=%FF%FE")
            .expect_err("bad")
            .contains("UTF-8"));
        assert!(FormData::parse(b"a=\xff")
            .expect_err("bad")
            .contains("UTF-8"));
        assert!(FormData::parse(b"a=%G1")
            .expect_err("bad")
            .contains("escape"));
        assert!(FormData::parse(b"a=%4")
            .expect_err("bad")
            .contains("escape"));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
        assert!(FormData::parse(many.as_bytes()).is_err());
    }
}
