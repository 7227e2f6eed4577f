//! Roster spread: a newer signed roster reaches every node through ordinary traffic.

use super::*;

#[test]
fn a_newer_roster_spreads_through_ordinary_traffic() {
    let mut net = net(2);
    // Re-sign the same membership as serial 2 and give it to node 1 only.
    let authority = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let mut newer = net.roster.clone();
    newer.serial = 2;
    let mut signed = SignedRoster::new(&newer).expect("valid");
    signed.sign(&authority, None).expect("sign");
    let bytes = signed.to_bytes().expect("encode");
    let store = net.nodes[1].core.take().expect("up").into_store();
    let core = Core::new(
        identity(1),
        newer,
        bytes,
        net.config.clone(),
        store,
        [1; 32],
    )
    .expect("core");
    net.nodes[1].core = Some(core);
    assert_eq!(net.core(2).roster().serial, 1);
    net.submit(1, 2, Payload::FreeText(example_free_text()));
    net.run_for(2_000);
    assert_eq!(net.core(2).roster().serial, 2);
    assert!(net.has_event(2, |event| matches!(
        event,
        Event::RosterUpdated { serial: 2 }
    )));
    // Node 2 now advertises serial 2 and node 0 (the relay) picks it up when they talk.
    net.submit(2, 1, Payload::FreeText(example_free_text()));
    net.run_for(2_000);
    // A forged "newer" roster is refused and the node keeps serial 2.
    let forger = AuthorityKey::generate(&mut ChaCha20Rng::from_seed([7; 32]));
    let mut forged = net.roster.clone();
    forged.serial = 3;
    forged.authorities = vec![forger.public()];
    let mut signed = SignedRoster::new(&forged).expect("valid");
    signed.sign(&forger, None).expect("sign");
    let bytes = signed.to_bytes().expect("encode");
    let now = net.now;
    let from = net.nodes[1].id;
    net.core(2).offered_roster(now, from, &bytes);
    assert_eq!(net.core(2).roster().serial, 2);
    assert!(std::iter::from_fn(|| net.core(2).poll_event())
        .any(|event| matches!(event, Event::RosterRejected { .. })));
}
