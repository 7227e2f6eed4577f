//! Key rotation on real nodes (daemons in this process: real libp2p on loopback, real sled, the
//! real `quickfreeze key rotate`): requests flow before the rotation, while it waits for its
//! roster, across the restart onto the new keys (one sealed to the old key and held in the
//! sender's outbox meanwhile), during the grace and after it; each is delivered exactly once with
//! a verified receipt, and the old keys leave the key file when the grace ends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use quickfreeze_keys::roster::Member;
use quickfreeze_keys::{Identity, Timestamp};
use quickfreeze_node::config::files;
use quickfreeze_node::control::{ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, example_preservation, Payload};

use common::{ask, fixture, run_ok, send_and_wait, wait_delivered};

/// Grace for the old keys: long enough to restart both nodes under load, short enough to wait
/// out in a test.
const GRACE_SECONDS: u64 = 45;

async fn submit(dir: &Path, to: &str, payload: Payload) -> String {
    match ask(
        dir,
        ControlRequest::Submit {
            recipient: to.into(),
            payload: Box::new(payload),
        },
    )
    .await
    {
        ControlResponse::Submitted { message_id, .. } => message_id,
        other => panic!("submit refused: {other:?}"),
    }
}

/// How many times `message_id` is in the inbox of the node in `dir`.
async fn inbox_count(dir: &Path, message_id: &str) -> usize {
    match ask(dir, ControlRequest::Inbox { limit: 1_000 }).await {
        ControlResponse::Inbox { rows } => rows
            .iter()
            .filter(|entry| entry.message_id == message_id)
            .count(),
        other => panic!("inbox failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rotates_its_keys_while_requests_flow() {
    let fixture = fixture(&["DE", "FR"], vec![]);
    let (de_dir, fr_dir) = (fixture.dirs[0].clone(), fixture.dirs[1].clone());
    let fr_id = fixture.identities[1].node_id();
    let mut de = fixture.start(0).await;
    let mut fr = fixture.start(1).await;
    let mut delivered = Vec::new();

    // Before.
    delivered
        .push(send_and_wait(&de_dir, "FR", Payload::Preservation(example_preservation())).await);

    // FR rotates while it runs; it keeps working on its old keys until the roster names the new.
    let printed = run_ok(
        &fr_dir,
        &[
            "key",
            "rotate",
            "--data-dir",
            fr_dir.to_str().expect("utf-8 path"),
            "--grace",
            &format!("{GRACE_SECONDS}s"),
        ],
    );
    let rotated_at = Instant::now();
    let entry: toml::Table = toml::from_str(&printed).expect("rotate prints a member entry");
    let new_entry: Member = entry["members"]
        .as_array()
        .and_then(|members| members.first())
        .cloned()
        .expect("one member")
        .try_into()
        .expect("a member entry");
    assert_eq!(new_entry.node_id, fr_id, "the node id never changes");
    assert_eq!(new_entry.previous_keys.len(), 1);
    assert_eq!(new_entry.previous_keys[0].signing_key, fr_id);
    let new_key = new_entry.current_signing_key();
    assert_ne!(new_key, fr_id);
    delivered.push(send_and_wait(&de_dir, "FR", Payload::FreeText(example_free_text())).await);
    delivered.push(send_and_wait(&fr_dir, "DE", Payload::FreeText(example_free_text())).await);

    // The authority issues serial 2 with FR's new entry. FR is down while DE accepts a request:
    // DE, still on serial 1, seals it to FR's old key and holds it in its outbox.
    let mut roster = fixture.roster.clone();
    roster.serial += 1;
    for member in &mut roster.members {
        if member.node_id == fr_id {
            *member = new_entry.clone();
        }
    }
    fr.stop().await.expect("FR stops");
    let held = submit(&de_dir, "FR", Payload::Preservation(example_preservation())).await;
    fixture.install(&roster, None);
    de.stop().await.expect("DE stops");
    de = fixture.start(0).await;
    fr = fixture.start(1).await;
    assert_eq!(fr.node_id, fr_id);

    // During the grace: the held request (sealed to the old key) and new ones both ways.
    wait_delivered(&de_dir, &held).await;
    delivered.push(held);
    delivered.push(send_and_wait(&de_dir, "FR", Payload::FreeText(example_free_text())).await);
    delivered.push(send_and_wait(&fr_dir, "DE", Payload::FreeText(example_free_text())).await);
    assert!(
        rotated_at.elapsed() < Duration::from_secs(GRACE_SECONDS),
        "the machine was too slow to test inside the grace; raise GRACE_SECONDS"
    );

    // After the grace: FR erases the old pair from its key file (checked every 10 s).
    let key_file = fr_dir.join(files::KEY);
    let deadline = rotated_at + Duration::from_secs(GRACE_SECONDS + 60);
    loop {
        let identity = Identity::read_key_file(&key_file).expect("key file");
        if identity.key_pair_count() == 1 {
            assert_eq!(identity.node_id(), fr_id);
            assert_eq!(identity.signing_key(), new_key);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old keys are still in the key file {} s after the rotation",
            rotated_at.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(Timestamp::now() >= new_entry.previous_keys[0].valid_until);
    delivered.push(send_and_wait(&de_dir, "FR", Payload::FreeText(example_free_text())).await);
    delivered.push(send_and_wait(&fr_dir, "DE", Payload::FreeText(example_free_text())).await);

    // Exactly once: every request is in its recipient's inbox once.
    for message_id in &delivered {
        let count = inbox_count(&fr_dir, message_id).await + inbox_count(&de_dir, message_id).await;
        assert_eq!(count, 1, "{message_id} is in the inboxes {count} times");
    }
    de.stop().await.expect("DE stops");
    fr.stop().await.expect("FR stops");
}
