//! Bytes from a peer -> `Envelope::from_bytes` -> `verify_outer` (what a relay does) -> `open` by
//! the addressed identity (what a recipient does). Nothing may panic; whatever decodes must
//! re-encode to the same bytes; whatever opens must be addressed to the opener.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_fuzz::{world, NOW};
use quickfreeze_proto::envelope::{open, verify_outer, Envelope};

fuzz_target!(|data: &[u8]| {
    let world = world();
    let envelope = match Envelope::from_bytes(data) {
        Ok(envelope) => envelope,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(
        envelope.to_bytes(),
        data,
        "decoding accepted a non-canonical encoding"
    );
    if let Err(error) = verify_outer(&world.roster, &envelope, NOW, &world.policy) {
        let _ = (error.to_string(), error.is_permanent());
    }
    let me = world.identity_for(&envelope.header.recipient);
    match open(me, &world.roster, &envelope, NOW, &world.policy) {
        Ok((sender, payload)) => {
            assert_eq!(envelope.header.recipient, me.node_id());
            assert_eq!(sender.node_id, envelope.header.sender);
            let _ = (payload.validate(), payload.summary());
        }
        Err(error) => {
            let _ = (error.to_string(), error.is_permanent());
        }
    }
});
