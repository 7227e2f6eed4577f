//! `audit verify` and `audit export`: the audit trail's hash chain and its export for a case
//! file, on a running node or on a stopped node's store.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use quickfreeze_keys::Timestamp;

use super::access::Access;
use super::{print_json, unexpected, Target};
use crate::control::{ControlRequest, ControlResponse};

/// `audit` commands. Both work whether the node runs (through its console socket) or not (on
/// its store directly).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; name the first record that was edited, removed or reordered,
    /// and print the number of records and the head hash.
    ///
    /// Records deleted from the END of the log leave a shorter chain that is consistent on its
    /// own: that is only detected against a head hash recorded earlier. Keep the printed head
    /// somewhere else (the shift log, a ticket) and pass it back with --expect-head.
    Verify {
        /// A head hash printed by an earlier `audit verify`; it must still be in the chain.
        #[arg(long, value_name = "HEX")]
        expect_head: Option<String>,
        /// A signed head kept outside the node (a copy of its `audit-head` file, e.g. taken at
        /// the end of a shift, or a relay's witness copy): the chain must still hold it.
        #[arg(long, value_name = "FILE")]
        witness: Option<PathBuf>,
        /// Which node, and output format.
        #[command(flatten)]
        target: Target,
    },
    /// Write the records since a time as JSON lines (ids, digests, metadata; never content).
    Export {
        /// An age such as 30d, 12h, 90m, or an RFC 3339 time such as 2026-11-01T00:00:00Z.
        #[arg(long)]
        since: String,
        /// Write to this file (created new, mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the records of this message (an id or a unique prefix of at least 6 hex digits).
        #[arg(long, value_name = "ID")]
        message: Option<String>,
        /// Only the records of the messages of this case reference: its requests and the
        /// statuses and follow-ups in their threads.
        #[arg(long, value_name = "REF")]
        case: Option<String>,
        /// The node's data directory.
        #[arg(long, env = "QUICKFREEZE_DATA_DIR", default_value = ".")]
        data_dir: PathBuf,
    },
}

pub(super) fn audit(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify {
            expect_head,
            witness,
            target,
        } => {
            let witness = match &witness {
                None => None,
                Some(path) => {
                    let bytes = std::fs::read(path).with_context(|| {
                        format!("--witness {}: cannot read the head file", path.display())
                    })?;
                    Some(hex::encode(bytes))
                }
            };
            let mut access = Access::open(&target.data_dir)?;
            let response = access.request(&ControlRequest::AuditVerify {
                expect_head: expect_head.clone(),
                witness,
            })?;
            let ControlResponse::AuditVerified { report } = response else {
                return unexpected(response);
            };
            if target.json {
                print_json(&report)?;
            } else {
                outln!("records      {}", report.records);
                outln!("head         {}", report.head);
                for note in &report.head_notes {
                    outln!("note         {note}");
                }
            }
            if let (Some(seq), Some(problem)) = (report.first_bad, &report.problem) {
                bail!("the audit log is NOT intact from record {seq}: {problem}. Keep a copy of the data directory as it is and report it");
            }
            if let Some(problem) = report.head_problems.first() {
                bail!("the audit log is NOT intact: {problem}. Keep a copy of the data directory as it is and report it");
            }
            if report.expected_head_found == Some(false) {
                bail!(
                    "head {} is not in the log: records were removed from its end, or the log was rewritten. Keep a copy of the data directory as it is and report it",
                    expect_head.unwrap_or_default()
                );
            }
            if !target.json {
                outln!(
                    "OK           the hash chain is intact and holds every signed head checked{}",
                    if expect_head.is_some() {
                        " and contains the expected head"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        AuditCommand::Export {
            since,
            out,
            message,
            case,
            data_dir,
        } => {
            let since = crate::audit::parse_since(&since, Timestamp::now())
                .map_err(|error| anyhow!("--since: {error}"))?;
            let mut writer: Box<dyn std::io::Write> = match &out {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(path)
                        .with_context(|| {
                            format!("{}: cannot create (it must not exist yet)", path.display())
                        })?;
                    Box::new(std::io::BufWriter::new(file))
                }
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut access = Access::open(&data_dir)?;
            let mut after = None;
            let mut written = 0u64;
            loop {
                let response = access.request(&ControlRequest::AuditExportFiltered {
                    since_ms: since.0,
                    after,
                    limit: crate::audit::MAX_EXPORT_PAGE,
                    message: message.clone(),
                    case: case.clone(),
                })?;
                let ControlResponse::AuditPage { lines, next_after } = response else {
                    return unexpected(response);
                };
                for line in &lines {
                    let result = serde_json::to_writer(&mut writer, line)
                        .map_err(std::io::Error::from)
                        .and_then(|()| writer.write_all(b"\n"));
                    match result {
                        Ok(()) => written += 1,
                        // A closed stdout (`| head`) ends the export quietly.
                        Err(error)
                            if out.is_none() && error.kind() == std::io::ErrorKind::BrokenPipe =>
                        {
                            return Ok(())
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                match next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            match writer.flush() {
                Err(error) if out.is_none() && error.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(())
                }
                other => other?,
            }
            if let Some(path) = out {
                eprintln!(
                    "{written} records since {since} written to {}",
                    path.display()
                );
            }
            Ok(())
        }
    }
}
