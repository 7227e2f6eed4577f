//! Upgrades: data directories written by an earlier release open with this build. The fixture
//! `tests/fixtures/release-1.tar.gz` (made by `tests/fixtures/build-fixture.sh`; store format,
//! key file version and config format all 1) passes `audit verify` on the stopped store, then
//! each node runs and answers `status`, `inbox`, `outbox` and `show` with the messages it holds.
//! A migration of the store is tested here when one is added: this fixture is what it must
//! carry forward.
//!
//! Also: a config or key file of a newer format than this build knows is refused with
//! "written by a newer quickfreeze" and "upgrade", never misread.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, run_ok, NodeProcess};

/// Unpacks the fixture into a temporary directory and gives each node a free listen port.
fn unpack(root: &Path) -> (PathBuf, PathBuf, BTreeMap<String, String>) {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/release-1.tar.gz");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(root)
        .status()
        .expect("tar");
    assert!(status.success(), "unpacking {}", archive.display());
    for node in ["de", "fr"] {
        let config = root.join(node).join("node.toml");
        let text = std::fs::read_to_string(&config).expect("node.toml");
        let port = common::free_port();
        let rewritten: String = text
            .lines()
            .map(|line| {
                if line.starts_with("listen = ") {
                    format!("listen = [\"/ip4/127.0.0.1/tcp/{port}\"]")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config, rewritten + "\n").expect("write node.toml");
    }
    let ids = std::fs::read_to_string(root.join("fr/FIXTURE-IDS.txt"))
        .expect("ids")
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .collect();
    (root.join("de"), root.join("fr"), ids)
}

fn dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}

#[test]
fn a_release_1_data_directory_opens_with_this_build() {
    let root = tempfile::tempdir().expect("tempdir");
    let (de, fr, ids) = unpack(root.path());
    assert_eq!(ids.len(), 3, "fixture ids: {ids:?}");

    // The stopped stores: the audit chains verify.
    for dir in [&de, &fr] {
        let said = run_ok(
            root.path(),
            &["audit", "verify", "--data-dir", &dir_arg(dir)],
        );
        assert!(said.contains("OK"), "{}: {said}", dir.display());
    }

    // FR holds the three requests, one acknowledged and two answered.
    {
        let _fr = NodeProcess::start(&fr);
        let status = run_ok(root.path(), &["status", "--data-dir", &dir_arg(&fr)]);
        assert!(!status.is_empty());
        let inbox = run_ok(
            root.path(),
            &["inbox", "--json", "--data-dir", &dir_arg(&fr)],
        );
        for id in ids.values() {
            assert!(inbox.contains(id.as_str()), "FR inbox lacks {id}: {inbox}");
        }
        let show = run_ok(
            root.path(),
            &[
                "show",
                &ids["emergency"],
                "--json",
                "--data-dir",
                &dir_arg(&fr),
            ],
        );
        assert!(show.contains("Officer Fixture"), "{show}");
        assert!(show.contains("threat to life"), "{show}");
    }

    // DE sent them (delivered, with receipts) and holds the two status replies.
    {
        let _de = NodeProcess::start(&de);
        let outbox = run_ok(
            root.path(),
            &["outbox", "--json", "--data-dir", &dir_arg(&de)],
        );
        for id in ids.values() {
            assert!(
                outbox.contains(id.as_str()),
                "DE outbox lacks {id}: {outbox}"
            );
        }
        let show = run_ok(
            root.path(),
            &[
                "show",
                &ids["urgent"],
                "--json",
                "--data-dir",
                &dir_arg(&de),
            ],
        );
        assert!(show.contains("Urgent question about logs"), "{show}");
        let inbox = run_ok(
            root.path(),
            &["inbox", "--json", "--data-dir", &dir_arg(&de)],
        );
        assert!(
            inbox.contains("FR-FIX-1") || inbox.contains("preserved"),
            "{inbox}"
        );
    }

    // Both stores were migrated to this build's format on opening (record checksums), and
    // every record passes `store verify`: checksums, and the store agrees with the audit trail.
    for dir in [&de, &fr] {
        let said = run_ok(
            root.path(),
            &["store", "verify", "--data-dir", &dir_arg(dir)],
        );
        assert!(said.contains("OK"), "{}: {said}", dir.display());
    }

    // And a backup of the old directory restores with this build.
    let file = root.path().join("fr.qfb");
    run_ok(
        root.path(),
        &[
            "backup",
            "--data-dir",
            &dir_arg(&fr),
            "--out",
            &dir_arg(&file),
        ],
    );
    let said = run_ok(
        root.path(),
        &[
            "restore",
            &dir_arg(&file),
            "--data-dir",
            &dir_arg(&root.path().join("fr-restored")),
        ],
    );
    assert!(said.contains("OK           audit verify"), "{said}");
}

#[test]
fn newer_formats_are_refused_with_upgrade() {
    let root = tempfile::tempdir().expect("tempdir");
    let (de, _fr, _) = unpack(root.path());

    // A config of a newer format (with a field this build does not know).
    let config = de.join("node.toml");
    let original = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "format = 2\nnew_setting = true\n{}",
            original.replace("format = 1\n", "")
        ),
    )
    .expect("write");
    let output = run(root.path(), &["run", "--data-dir", &dir_arg(&de)]);
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("written by a newer quickfreeze"), "{said}");
    std::fs::write(&config, &original).expect("restore config");

    // A key file of a newer version.
    let key = de.join("node.key");
    let text = std::fs::read_to_string(&key).expect("key");
    let newer: String = text
        .lines()
        .map(|line| {
            if line.starts_with("version = ") {
                "version = 9".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&key, newer + "\n").expect("write key");
    let output = run(root.path(), &["run", "--data-dir", &dir_arg(&de)]);
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success());
    assert!(said.contains("written by a newer quickfreeze"), "{said}");
    assert!(said.contains("upgrade"), "{said}");
}
