//! Bytes from a peer -> `Batch::from_bytes`, then every frame is checked the way a node would
//! (outer envelope check, receipt verification, roster decoding). Nothing may panic; decoded
//! batches are canonical and within the frame limit; every decoded envelope re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_fuzz::{world, NOW};
use quickfreeze_keys::SignedRoster;
use quickfreeze_proto::envelope::verify_outer;
use quickfreeze_proto::frame::{Batch, Frame, MAX_FRAMES_PER_BATCH};

fuzz_target!(|data: &[u8]| {
    let world = world();
    let batch = match Batch::from_bytes(data) {
        Ok(batch) => batch,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(batch.frames.len() <= MAX_FRAMES_PER_BATCH);
    assert_eq!(
        batch.to_bytes().expect("re-encode"),
        data,
        "non-canonical batch accepted"
    );
    for frame in &batch.frames {
        match frame {
            Frame::Deliver(envelope) | Frame::Handoff(envelope) => {
                assert!(
                    !envelope.to_bytes().is_empty(),
                    "decoded envelope does not re-encode"
                );
                let _ = verify_outer(&world.roster, envelope, NOW, &world.policy)
                    .map_err(|error| error.to_string());
            }
            Frame::Receipt(receipt) => {
                let _ = receipt
                    .verify(&world.roster, NOW)
                    .map_err(|error| error.to_string());
            }
            Frame::Roster(bytes) => {
                if let Ok(signed) = SignedRoster::from_bytes(bytes) {
                    let _ = signed.verify_self(NOW).map_err(|error| error.to_string());
                }
            }
            Frame::Refused { reason, .. } => {
                let _ = Frame::refused(
                    quickfreeze_proto::MessageId([0; 16]),
                    true,
                    reason.repeat(3),
                );
            }
            Frame::Revocations(notices) => {
                for bytes in notices {
                    if let Ok(signed) = quickfreeze_keys::SignedRevocation::from_bytes(bytes) {
                        let _ = signed.verify(&world.roster).map_err(|error| error.to_string());
                    }
                }
            }
            Frame::Ack(_)
            | Frame::RosterRequest
            | Frame::Ignored
            | Frame::Serials { .. }
            | Frame::RevocationRequest { .. } => {}
        }
    }
});
