//! Bytes from a peer -> `Receipt::from_bytes` -> `verify` and `verify_for` against the golden
//! preservation envelope's facts. Nothing may panic; decoded receipts are canonical; a receipt
//! that verifies must come from an allowed signer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_fuzz::{world, A, B, NOW, RELAY};
use quickfreeze_keys::roster::Role;
use quickfreeze_proto::receipt::{Receipt, ReceiptKind};

fuzz_target!(|data: &[u8]| {
    let world = world();
    let receipt = match Receipt::from_bytes(data) {
        Ok(receipt) => receipt,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(
        receipt.to_bytes(),
        data,
        "decoding accepted a non-canonical encoding"
    );
    match receipt.verify(&world.roster, NOW) {
        Ok(()) => {
            let body = &receipt.body;
            match body.kind {
                ReceiptKind::Delivered => assert_eq!(body.signer, body.recipient),
                ReceiptKind::Custody => {
                    let signer = world.roster.member(&body.signer).expect("member");
                    assert_eq!(signer.role, Role::Relay);
                }
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let result = receipt.verify_for(
        &world.roster,
        NOW,
        &receipt.body.message_id,
        &world.id(A),
        &world.id(B),
        &receipt.body.envelope_digest,
    );
    if result.is_ok() {
        assert!(receipt.body.signer == world.id(B) || receipt.body.signer == world.id(RELAY));
    }
});
