//! Bytes from a peer -> the delivery core of a fresh point of contact (B) and a fresh relay, via
//! `handle_request`, followed by timeouts and draining of transmits and events. The response must
//! always be a decodable batch with one answer per request frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quickfreeze_fuzz::{generate_identity, world, A, B, NOW, RELAY};
use quickfreeze_proto::core::{Core, CoreConfig, MemoryStore};
use quickfreeze_proto::frame::Batch;

fuzz_target!(|data: &[u8]| {
    let world = world();
    let request = Batch::from_bytes(data).ok();
    for who in [B, RELAY] {
        let mut core = Core::new(
            generate_identity(who),
            world.roster.clone(),
            world.signed_roster.clone(),
            CoreConfig::default(),
            MemoryStore::new(),
            [who; 32],
        )
        .expect("core");
        let response = core.handle_request(NOW, world.id(A), data);
        let response = Batch::from_bytes(&response).expect("the core's own response decodes");
        match &request {
            Some(request) => assert_eq!(response.frames.len(), request.frames.len()),
            None => assert_eq!(response.frames.len(), 1),
        }
        core.handle_timeout(NOW.plus_ms(1000));
        while let Some(transmit) = core.poll_transmit() {
            Batch::from_bytes(&transmit.bytes).expect("the core's own request decodes");
        }
        while core.poll_event().is_some() {}
    }
});
