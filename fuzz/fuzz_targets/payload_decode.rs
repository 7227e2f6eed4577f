//! Decrypted plaintext -> `Payload::from_bytes`, then everything the node does with a received
//! payload: validate, summarise, render as TOML for the console, and send as JSON over the control
//! channel. A received payload is *not* validated before it is stored and shown, so all of these
//! must cope with any decodable content.
//!
//! Assertions: nothing panics; decoding is canonical; a payload that passes `validate` survives the
//! JSON round trip the console depends on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_proto::payload::Payload;

fuzz_target!(|data: &[u8]| {
    let payload = match Payload::from_bytes(data) {
        Ok(payload) => payload,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(
        payload.to_bytes().expect("re-encode"),
        data,
        "non-canonical payload accepted"
    );
    let valid = payload.validate();
    if let Err(errors) = &valid {
        let _ = (errors.to_string(), errors.fields());
    }
    let summary = payload.summary();
    assert!(summary.chars().count() <= quickfreeze_proto::payload::SUMMARY_MAX_CHARS);
    let _ = (payload.kind(), payload.priority(), payload.case_reference());
    let _ = toml::to_string_pretty(&payload);
    let json = serde_json::to_string(&payload).expect("JSON rendering");
    let back = serde_json::from_str::<Payload>(&json);
    if valid.is_ok() {
        let back = back.unwrap_or_else(|error| panic!("valid payload fails JSON: {error}: {json}"));
        assert_eq!(back.kind(), payload.kind());
    }
});
