//! `kill -9` durability test with real processes.
//!
//! Two `quickfreeze run` processes (DE sends, FR receives) on loopback. A submitter thread feeds
//! requests to DE's console while the main thread SIGKILLs and restarts FR, and now and then DE,
//! at random moments. Afterwards it proves, from the nodes' own stores via their consoles:
//! every request the console acknowledged as accepted was delivered, every delivery receipt DE
//! holds matches a request in FR's inbox, and FR's inbox holds each request exactly once.
//!
//! `QF_KILL9_ROUNDS` sets the number of kills (default 6, enough for CI); `QF_KILL9_SEED` replays
//! a run. A long run: `QF_KILL9_ROUNDS=200 cargo test --release -p quickfreeze-tests --test kill9`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_proto::payload::{example_free_text, Payload};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::{console, NodeProcess};

fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let dirs = common::network(root, "kill9", &["DE", "FR"]);
    (dirs[0].clone(), dirs[1].clone())
}

fn try_submit(dir: &Path, index: usize) -> Option<String> {
    let mut client = ControlClient::connect(dir, Duration::from_secs(10)).ok()?;
    let mut text = example_free_text();
    text.subject = format!("kill9 request {index}");
    match client
        .request(&ControlRequest::Submit {
            recipient: "FR".into(),
            payload: Box::new(Payload::FreeText(text)),
        })
        .ok()?
    {
        ControlResponse::Submitted { message_id, .. } => Some(message_id),
        _ => None,
    }
}

#[test]
fn kill_minus_nine_loses_nothing_acknowledged_and_duplicates_nothing() {
    let rounds: usize = std::env::var("QF_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("QF_KILL9_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("kill9: rounds={rounds} seed={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = tempfile::tempdir().expect("tempdir");
    let (de_dir, fr_dir) = setup(root.path());
    let de = Arc::new(Mutex::new(Some(NodeProcess::start(&de_dir))));
    let mut fr = Some(NodeProcess::start(&fr_dir));

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let submitter = {
        let accepted = accepted.clone();
        let done = done.clone();
        let de_dir = de_dir.clone();
        std::thread::spawn(move || {
            let mut index = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some(id) = try_submit(&de_dir, index) {
                    accepted.lock().expect("lock").push(id);
                }
                index += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };

    let mut kills = 0;
    while kills < rounds {
        std::thread::sleep(Duration::from_millis(rng.random_range(30..300)));
        if kills % 4 == 3 {
            // Now and then the sender dies too: its accepted-but-undelivered outbox must survive.
            let mut guard = de.lock().expect("lock");
            if let Some(node) = guard.take() {
                node.kill9();
            }
            *guard = Some(NodeProcess::start(&de_dir));
        } else {
            if let Some(node) = fr.take() {
                node.kill9();
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
            fr = Some(NodeProcess::start(&fr_dir));
        }
        kills += 1;
    }
    done.store(true, Ordering::Relaxed);
    submitter.join().expect("submitter");
    let accepted: Vec<String> = accepted.lock().expect("lock").clone();
    assert!(!accepted.is_empty(), "seed={seed}: nothing was accepted");

    // Liveness: everything accepted gets delivered once both nodes stay up.
    let deadline = Instant::now() + Duration::from_secs(120);
    let delivered: BTreeSet<String> = loop {
        if let ControlResponse::Outbox { rows } =
            console(&de_dir, &ControlRequest::Outbox { limit: usize::MAX })
        {
            let delivered: BTreeSet<String> = rows
                .iter()
                .filter(|row| row.state == "delivered")
                .map(|row| row.message_id.clone())
                .collect();
            let missing = accepted
                .iter()
                .filter(|id| !delivered.contains(*id))
                .count();
            if missing == 0 {
                break delivered;
            }
            if Instant::now() > deadline {
                panic!(
                    "seed={seed}: {missing} of {} accepted requests never delivered",
                    accepted.len()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    // Safety: FR's inbox holds each delivered request exactly once.
    let ControlResponse::Inbox { rows } =
        console(&fr_dir, &ControlRequest::Inbox { limit: usize::MAX })
    else {
        panic!("seed={seed}: inbox query failed");
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        *counts.entry(row.message_id.clone()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        duplicates.is_empty(),
        "seed={seed}: duplicated in the inbox: {duplicates:?}"
    );
    for id in &delivered {
        assert!(
            counts.contains_key(id),
            "seed={seed}: DE holds a receipt for {id} but FR's inbox lacks it"
        );
    }
    eprintln!(
        "kill9: seed={seed} kills={kills} accepted={} delivered={} inbox={}",
        accepted.len(),
        delivered.len(),
        rows.len()
    );
    drop(fr);
    drop(de.lock().expect("lock").take());
}
