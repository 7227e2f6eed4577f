//! `store verify`: the whole store checked against its checksums, the audit trail and the
//! signed heads, on a stopped node (every start of the node runs the same check).

use anyhow::{bail, Result};
use clap::Subcommand;

use super::access::Access;
use super::{print_json, Target};

/// Exit status of `store verify` when something is damaged or lost (1 means it could not check:
/// the store would not open, or the node runs; 2 is a usage error).
pub const EXIT_DAMAGED: u8 = 3;

/// `store` commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Check a stopped node's store: every record against its checksum, the store against the
    /// audit trail (every message the trail says was submitted, sent, delivered or received is
    /// stored, and every stored message has its record), and the audit chain against the node's
    /// signed heads. Names each damaged record and missing message.
    ///
    /// Exit status: 0 intact (messages stored without their audit record, the remnant of a
    /// crash, are listed but are not damage; the node records them at its next start);
    /// 1 the check could not run (the node is running: stop it first; or the store does not
    /// open); 2 usage error; 3 damaged or lost data: keep a copy of the data directory as it is
    /// and restore from a backup.
    Verify {
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
}

/// The error that ends `store verify` with [`EXIT_DAMAGED`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Damaged {
    /// What to tell the operator.
    pub message: String,
}

pub(super) fn store(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Verify { target } => verify(&target),
    }
}

fn verify(target: &Target) -> Result<()> {
    let Access::Direct {
        store,
        log,
        data_dir,
    } = Access::open(&target.data_dir)?
    else {
        bail!(
            "the node with data directory {} is running: `store verify` reads the whole store and needs it stopped. Stop the node and run it again, or run `quickfreeze audit verify` (it works on a running node); every start of the node runs the same check",
            target.data_dir.display()
        );
    };
    let report = crate::integrity::check(&store, &log, &data_dir, None, true);
    if target.json {
        print_json(&report)?;
    } else {
        outln!("outbox       {} records intact", report.outbox);
        outln!("inbox        {} records intact", report.inbox);
        outln!("relay        {} records intact", report.relay);
        outln!(
            "audit        {} records, head {}",
            report.audit.records,
            report.audit.head
        );
        for note in &report.head_notes {
            outln!("note         {note}");
        }
        for message in &report.unrecorded {
            outln!(
                "unrecorded   {} message {}{} has no audit record (a crash between storing and recording it; the node records it at its next start)",
                message.tree,
                message.message_id,
                message
                    .sender
                    .as_ref()
                    .map_or_else(String::new, |sender| format!(" from {sender}"))
            );
        }
        for problem in report.problems() {
            outln!("DAMAGED      {problem}");
        }
    }
    if report.is_damaged() {
        return Err(Damaged {
            message: format!(
                "the store in {} is damaged ({} problem{}): stop using it, keep a copy of the data directory exactly as it is, and restore it from your latest backup (`quickfreeze restore`), or contact support with the copy",
                data_dir.display(),
                report.problems().len(),
                if report.problems().len() == 1 { "" } else { "s" }
            ),
        }
        .into());
    }
    if !target.json {
        outln!("OK           every record is intact and the store agrees with the audit trail");
    }
    Ok(())
}
