//! The console's commands as the loop runs them: dispatch of each control request, submission,
//! acknowledgement and reply.

use quickfreeze_keys::{CountryCode, NodeId, Timestamp};
use quickfreeze_proto::core::{awaits_acknowledgement, OutboxState, Store};
use quickfreeze_proto::payload::Payload;
use quickfreeze_proto::MessageId;

use super::audit_facts::status_label;
use super::faults::fault_injection_refused;
use super::{Command, Daemon};
use crate::audit::{AuditFacts, AuditKind};
use crate::control::{ControlRequest, ControlResponse, MAX_SUBMIT_BATCH};

const MAX_WAITERS: usize = 1024;

impl Daemon {
    fn resolve_recipient(&self, text: &str) -> Result<NodeId, String> {
        let roster = self.core.roster();
        if text.len() == 2 {
            let country = CountryCode::parse(text)?;
            return roster
                .by_country(country)
                .map(|member| member.node_id)
                .ok_or_else(|| {
                    format!(
                        "no member for country {country} in roster serial {}",
                        roster.serial
                    )
                });
        }
        let node: NodeId = text
            .parse()
            .map_err(|error: quickfreeze_keys::KeyError| error.to_string())?;
        roster
            .member(&node)
            .map(|member| member.node_id)
            .ok_or_else(|| format!("{node} is not in roster serial {}", roster.serial))
    }

    /// Validates, seals and stores one submission; the answer leaves after the group commit.
    fn submit(&mut self, now: Timestamp, recipient: &str, payload: Payload) -> ControlResponse {
        match self.resolve_recipient(recipient) {
            Err(message) => ControlResponse::Error { message },
            Ok(node) => match self.core.submit(now, node, payload) {
                Ok(message_id) => ControlResponse::Submitted {
                    message_id: message_id.to_string(),
                    recipient: node.to_string(),
                    country: self.country(&node),
                },
                Err(error) => ControlResponse::Error {
                    message: error.to_string(),
                },
            },
        }
    }

    pub(super) fn on_command(&mut self, command: Command) {
        let Command { request, reply } = command;
        let now = Timestamp::now();
        let writes_new_message = matches!(
            request,
            ControlRequest::Submit { .. }
                | ControlRequest::SubmitBatch { .. }
                | ControlRequest::Reply { .. }
        );
        if writes_new_message {
            self.check_disk(std::time::Instant::now());
            if let Some(message) = self.disk.refusal() {
                self.metrics_disk_refusals += 1;
                self.pending_replies
                    .push((reply, ControlResponse::Error { message }));
                return;
            }
        }
        let response = match request {
            ControlRequest::Submit { recipient, payload } => self.submit(now, &recipient, *payload),
            ControlRequest::SubmitBatch { items } => {
                if items.len() > MAX_SUBMIT_BATCH {
                    ControlResponse::Error {
                        message: format!(
                            "a batch holds at most {MAX_SUBMIT_BATCH} submissions, this one {}; split it",
                            items.len()
                        ),
                    }
                } else {
                    let results = items
                        .into_iter()
                        .map(|item| self.submit(now, &item.recipient, item.payload))
                        .collect();
                    ControlResponse::SubmittedBatch { results }
                }
            }
            ControlRequest::Inbox { limit } => self.inbox(now, limit),
            ControlRequest::Outbox { limit } => self.outbox(now, limit),
            ControlRequest::InboxQuery { query } => {
                tokio::task::block_in_place(|| self.inbox_query(now, &query))
            }
            ControlRequest::OutboxQuery { query } => {
                tokio::task::block_in_place(|| self.outbox_query(now, &query))
            }
            ControlRequest::Show { message_id } => {
                let response = self.show(&message_id);
                if let ControlResponse::Message { detail } = &response {
                    if let Ok(id) = detail.message_id.parse::<MessageId>() {
                        let (peer, digest) = self.message_facts(&id);
                        self.record(
                            now,
                            AuditFacts {
                                kind: AuditKind::Opened,
                                message_id: Some(id),
                                peer,
                                country: peer.map(|peer| self.country(&peer)),
                                envelope_digest: digest,
                                detail: format!(
                                    "{} message opened at the console",
                                    detail.direction
                                ),
                            },
                        );
                    }
                }
                response
            }
            ControlRequest::Ack {
                message_id,
                officer,
            } => self.acknowledge(now, &message_id, &officer),
            ControlRequest::Reply {
                message_id,
                status,
                note,
                officer,
            } => match officer_named(&officer).and_then(|()| self.find_inbox_sender(&message_id)) {
                Err(message) => ControlResponse::Error { message },
                Ok((sender, id)) => {
                    let label = status_label(&status);
                    let who = officer.clone();
                    match self.core.reply(now, sender, id, status, note, officer) {
                        Ok(reply) => {
                            let (_, digest) = self.message_facts(&id);
                            self.record(
                                now,
                                AuditFacts {
                                    kind: AuditKind::StatusSent,
                                    message_id: Some(id),
                                    peer: Some(sender),
                                    country: Some(self.country(&sender)),
                                    envelope_digest: digest,
                                    detail: format!(
                                        "{label} by officer {who}; status message {reply}"
                                    ),
                                },
                            );
                            self.check_deadlines(now);
                            ControlResponse::Replied {
                                status_message_id: reply.to_string(),
                            }
                        }
                        Err(error) => ControlResponse::Error {
                            message: error.to_string(),
                        },
                    }
                }
            },
            ControlRequest::Peers => self.peers(),
            ControlRequest::MetricsSnapshot => self.snapshot(now),
            ControlRequest::Stats { since_ms } => {
                let roster = self.core.roster();
                tokio::task::block_in_place(|| {
                    ControlResponse::from_stats(crate::stats::from_store(
                        self.core.store(),
                        roster,
                        Timestamp(since_ms),
                    ))
                })
            }
            request @ (ControlRequest::AuditVerify { .. }
            | ControlRequest::AuditExport { .. }
            | ControlRequest::AuditExportFiltered { .. }) => {
                // The records of this turn so far are read too (they become durable with its
                // commit, like everything else the answer reports).
                match self.audit.write_pending(self.core.store_mut()) {
                    Err(error) => {
                        self.audit_error = Some(error.to_string());
                        ControlResponse::Error {
                            message: format!("the audit log cannot be written: {error}"),
                        }
                    }
                    Ok(()) => tokio::task::block_in_place(|| {
                        crate::audit::answer(
                            &self.audit,
                            self.core.store(),
                            &self.data_dir,
                            &request,
                        )
                    }),
                }
            }
            ControlRequest::EvidenceExport { message_id } => self.evidence_export(now, &message_id),
            ControlRequest::Fault {
                peers,
                drop_outbound,
                drop_inbound,
                delay_ms,
            } => self.inject_fault(&peers, drop_outbound, drop_inbound, delay_ms),
            ControlRequest::FaultClear => {
                if self.fault_injection {
                    self.network.clear_link_faults();
                    ControlResponse::FaultsSet { faulty_peers: 0 }
                } else {
                    fault_injection_refused()
                }
            }
            ControlRequest::DeliveryLog { drain } => self.delivery_log_report(drain),
            ControlRequest::Metrics { reset } => self.metrics_report(reset),
            ControlRequest::Status => self.status(now),
            ControlRequest::InstallRoster { signed_hex } => self.install_roster(now, &signed_hex),
            ControlRequest::ApplyRevocation { signed_hex } => self.apply_revocation(&signed_hex),
            ControlRequest::WaitDelivered { message_id, .. } => {
                let id = match self.resolve_message_id(&message_id) {
                    Ok(id) => id,
                    Err(message) => {
                        self.pending_replies
                            .push((reply, ControlResponse::Error { message }));
                        return;
                    }
                };
                match self.core.store().get_outbox(&id) {
                    Ok(Some(entry)) if matches!(entry.state, OutboxState::Delivered { .. }) => {
                        self.delivered_response(&id)
                    }
                    Ok(Some(_)) => {
                        self.waiters.retain(|_, list| {
                            list.retain(|sender| !sender.is_closed());
                            !list.is_empty()
                        });
                        let waiting: usize = self.waiters.values().map(Vec::len).sum();
                        if waiting >= MAX_WAITERS {
                            ControlResponse::Error {
                                message: format!(
                                    "{MAX_WAITERS} consoles are already waiting; try again later"
                                ),
                            }
                        } else {
                            self.waiters.entry(id).or_default().push(reply);
                            return;
                        }
                    }
                    Ok(None) => ControlResponse::Error {
                        message: format!("no message {id} in the outbox"),
                    },
                    Err(error) => ControlResponse::Error {
                        message: error.to_string(),
                    },
                }
            }
            ControlRequest::Backup { with_keys } => {
                // Taken at the end of this turn and answered when the file is written, not by
                // the group commit (see `backup.rs`).
                self.backups_waiting.push((with_keys, reply));
                return;
            }
            ControlRequest::OfficerAction {
                officer,
                action,
                message_id,
            } => self.record_officer_action(now, &officer, &action, message_id.as_deref()),
        };
        self.pending_replies.push((reply, response));
    }

    /// Records an action an officer took in a console outside the daemon (the web console's
    /// logins, logouts and sends) in the audit trail, under the officer's name.
    fn record_officer_action(
        &mut self,
        now: Timestamp,
        officer: &str,
        action: &str,
        message_id: Option<&str>,
    ) -> ControlResponse {
        let id = match message_id.map(str::parse::<MessageId>).transpose() {
            Ok(id) => id,
            Err(message) => return ControlResponse::Error { message },
        };
        let (peer, digest) = match &id {
            Some(id) => self.message_facts(id),
            None => (None, None),
        };
        let clean = |text: &str| -> String { text.chars().filter(|c| !c.is_control()).collect() };
        self.record(
            now,
            AuditFacts {
                kind: AuditKind::OfficerAction,
                message_id: id,
                peer,
                country: peer.map(|peer| self.country(&peer)),
                envelope_digest: digest,
                detail: format!("officer {}: {}", clean(officer), clean(action)),
            },
        );
        ControlResponse::ActionRecorded
    }

    /// `ack`: a request is acknowledged and its sender told (once); a status reply or a
    /// follow-up is only marked read here, and nothing is sent.
    fn acknowledge(&mut self, now: Timestamp, message_id: &str, officer: &str) -> ControlResponse {
        let (sender, id) =
            match officer_named(officer).and_then(|()| self.find_inbox_sender(message_id)) {
                Ok(found) => found,
                Err(message) => return ControlResponse::Error { message },
            };
        let entry = match self.core.store().get_inbox(&sender, &id) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                return ControlResponse::Error {
                    message: format!("no message {id} in the inbox"),
                }
            }
            Err(error) => {
                return ControlResponse::Error {
                    message: error.to_string(),
                }
            }
        };
        let request = awaits_acknowledgement(&entry.payload);
        let was_read = entry.acknowledged_at.is_some();
        match self.core.acknowledge(now, sender, id, officer) {
            Err(error) => ControlResponse::Error {
                message: error.to_string(),
            },
            Ok(_) if !request => {
                // The thread's other unread replies from the same node are read with it (the
                // inbox shows them as one row).
                let root = super::find::thread_root(id, &entry.payload);
                let others: Vec<MessageId> = self
                    .core
                    .store()
                    .inbox_entries_from(&sender)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|other| {
                        other.message_id != id
                            && other.acknowledged_at.is_none()
                            && !awaits_acknowledgement(&other.payload)
                            && super::find::thread_root(other.message_id, &other.payload) == root
                    })
                    .map(|other| other.message_id)
                    .collect();
                for other in others {
                    if let Err(error) = self.core.acknowledge(now, sender, other, officer) {
                        return ControlResponse::Error {
                            message: error.to_string(),
                        };
                    }
                }
                if !was_read {
                    self.record(
                        now,
                        AuditFacts {
                            kind: AuditKind::Opened,
                            message_id: Some(id),
                            peer: Some(sender),
                            country: Some(self.country(&sender)),
                            envelope_digest: Some(entry.digest),
                            detail: format!(
                                "{} marked read by officer {officer}; nothing sent",
                                entry.payload.kind()
                            ),
                        },
                    );
                }
                ControlResponse::MarkedRead {
                    message_id: id.to_string(),
                }
            }
            Ok(reply) => {
                if let Some(status_id) = reply {
                    self.telemetry
                        .time_to_acknowledge
                        .observe(now.millis_since(entry.received_at) as f64 / 1000.0);
                    self.record(
                        now,
                        AuditFacts {
                            kind: AuditKind::Acknowledged,
                            message_id: Some(id),
                            peer: Some(sender),
                            country: Some(self.country(&sender)),
                            envelope_digest: Some(entry.digest),
                            detail: format!(
                                "acknowledged by officer {officer}; status message {status_id}"
                            ),
                        },
                    );
                }
                // Clear T2 in `status` at once rather than at the next tick.
                self.check_deadlines(now);
                ControlResponse::Acknowledged {
                    status_message_id: reply.map(|id| id.to_string()),
                }
            }
        }
    }

    fn find_inbox_sender(&self, text: &str) -> Result<(NodeId, MessageId), String> {
        let id = self.resolve_message_id(text)?;
        self.core
            .store()
            .indexes()
            .inbox_by_id(&id)
            .map_err(|error| error.to_string())?
            .map(|entry| (entry.sender, id))
            .ok_or_else(|| format!("no message {id} in the inbox"))
    }

    /// `roster install` into the running node: verified as an update, switched at once (the
    /// core's `RosterUpdated` event then closes connections of members no longer listed); the
    /// answer leaves after the group commit that stores it.
    fn install_roster(&mut self, now: Timestamp, signed_hex: &str) -> ControlResponse {
        let bytes = match hex::decode(signed_hex.trim()) {
            Ok(bytes) => bytes,
            Err(error) => {
                return ControlResponse::Error {
                    message: format!("the signed roster is not hex: {error}"),
                }
            }
        };
        match self.core.install_roster(now, &bytes) {
            Ok(serial) => ControlResponse::RosterInstalled { serial },
            Err(error) => ControlResponse::Error {
                message: format!(
                    "the running node refused the roster: {error} (it keeps serial {})",
                    self.core.roster().serial
                ),
            },
        }
    }

    /// `roster revoke --install` into the running node.
    fn apply_revocation(&mut self, signed_hex: &str) -> ControlResponse {
        let bytes = match hex::decode(signed_hex.trim()) {
            Ok(bytes) => bytes,
            Err(error) => {
                return ControlResponse::Error {
                    message: format!("the revocation notice is not hex: {error}"),
                }
            }
        };
        let before = self.core.roster().members.clone();
        match self.core.apply_revocation(None, &bytes) {
            Ok(applied) => {
                let notice = quickfreeze_keys::SignedRevocation::from_bytes(&bytes)
                    .and_then(|signed| signed.revocation_unverified());
                let revoked = notice
                    .map(|notice| {
                        before
                            .iter()
                            .filter(|member| notice.revokes(member))
                            .map(|member| format!("{} ({})", member.country, member.node_id))
                            .collect()
                    })
                    .unwrap_or_default();
                ControlResponse::RevocationApplied {
                    serial: applied.unwrap_or_else(|| self.core.revocation_serial()),
                    new: applied.is_some(),
                    revoked,
                }
            }
            Err(error) => ControlResponse::Error {
                message: format!("the running node refused the revocation notice: {error}"),
            },
        }
    }

    /// The evidence file of a thread, built from the store and signed now. The audit records of
    /// this turn are written first, so the signed head covers them (they become durable with
    /// this turn's commit, before the answer leaves).
    fn evidence_export(&mut self, now: Timestamp, message_id: &str) -> ControlResponse {
        if let Err(error) = self.audit.write_pending(self.core.store_mut()) {
            self.audit_error = Some(error.to_string());
            return ControlResponse::Error {
                message: format!("the audit log cannot be written: {error}"),
            };
        }
        let result = tokio::task::block_in_place(|| {
            let source = crate::evidence::EvidenceSource {
                store: self.core.store(),
                audit: self.audit.tree(),
                identity: self.core.identity(),
                signed_roster: self.core.signed_roster(),
            };
            crate::evidence::collect(&source, message_id, now)
        });
        match result {
            Ok(file) if file.len() + 1024 > crate::control::MAX_CONTROL_LINE_BYTES / 2 => {
                ControlResponse::Error {
                    message: format!(
                        "this case's evidence file ({} bytes) is larger than the console socket carries; stop the node and run the same command again: it then reads the store directly",
                        file.len()
                    ),
                }
            }
            Ok(file) => ControlResponse::Evidence { file },
            Err(message) => ControlResponse::Error { message },
        }
    }
}

/// Acknowledgements and replies carry the officer's name: there is no anonymous default.
fn officer_named(officer: &str) -> Result<(), String> {
    if officer.trim().is_empty() {
        Err("give your name: acknowledgements and replies carry the officer's name (--officer NAME, or QUICKFREEZE_OFFICER)".into())
    } else {
        Ok(())
    }
}
