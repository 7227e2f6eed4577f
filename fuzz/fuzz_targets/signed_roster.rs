//! Bytes from a file or a peer -> `SignedRoster::from_bytes` -> `verify_self`, `verify_pinned`
//! and `verify_update` against the fixture roster. The body is decoded and content-checked before
//! any signature, so `Roster::validate` and every error message see hostile input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_fuzz::{world, NOW};
use quickfreeze_keys::SignedRoster;

fuzz_target!(|data: &[u8]| {
    let world = world();
    let signed = match SignedRoster::from_bytes(data) {
        Ok(signed) => signed,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(
        signed.to_bytes().expect("re-encode"),
        data,
        "non-canonical roster accepted"
    );
    match signed.roster_unverified() {
        Ok(roster) => {
            let _ = roster.authority_set_fingerprint().to_string();
            let _ = roster.to_toml();
            for member in &roster.members {
                let _ = (
                    member.node_id.to_string(),
                    roster.relays_for(&member.node_id),
                );
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let pinned = world.roster.authority_set_fingerprint();
    for result in [
        signed.verify_self(NOW),
        signed.verify_pinned(&pinned, NOW),
        signed.verify_update(&world.roster, NOW),
    ] {
        match result {
            Ok(roster) => assert!(roster.validate().is_ok()),
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
});
