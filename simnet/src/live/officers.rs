//! The officers: the planned workload, submissions through each node's console (tried again
//! while the node is down), status replies, and reading the delivery logs.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quickfreeze_node::control::{ControlClient, ControlRequest, ControlResponse};
use quickfreeze_proto::payload::Status;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::shared::{
    unix_us, Job, Shared, Submission, CONSOLE_TIMEOUT, MAX_SUBMIT_ATTEMPTS, OFFICER_RETRY,
};
use crate::sim::workload::{self, WorkKind, MARKER_PREFIX};

impl Shared {
    pub(super) fn retry(&self, job: Job) {
        if let Ok(sender) = self.retry_tx.lock() {
            let _ = sender.send((Instant::now() + OFFICER_RETRY, job));
        }
    }

    /// One submission attempt, on a submitter thread.
    pub(super) fn submit(&self, job: Job) {
        let (index, request) = match &job {
            Job::Request { index } | Job::Reply { index } => {
                let Ok(mut submissions) = self.submissions.lock() else {
                    return;
                };
                let submission = &mut submissions[*index];
                if matches!(job, Job::Request { .. }) {
                    submission.attempts += 1;
                    submission.submit_unix_us = unix_us();
                } else {
                    submission.reply_attempts += 1;
                }
                let request = match (&job, &submission.marker) {
                    (Job::Request { .. }, Some(marker)) => {
                        let kind = kind_of(marker);
                        ControlRequest::Submit {
                            recipient: self.slots[submission.recipient].node_id.to_string(),
                            payload: Box::new(workload::payload(kind, marker)),
                        }
                    }
                    _ => ControlRequest::Reply {
                        message_id: submission.message_id.clone().unwrap_or_default(),
                        status: Status::AcknowledgedByOfficer,
                        note: "on it".into(),
                        officer: "duty officer".into(),
                    },
                };
                let node = match &job {
                    Job::Request { .. } => submission.sender,
                    Job::Reply { .. } => submission.recipient,
                };
                (*index, (node, request))
            }
        };
        let (node, request) = request;
        let outcome = match ControlClient::connect(&self.slots[node].data_dir, CONSOLE_TIMEOUT) {
            Err(error) => Err((false, error.to_string())),
            Ok(mut client) => match client.request(&request) {
                Ok(response) => Ok(response),
                Err(error) => Err((true, error.to_string())),
            },
        };
        let Ok(mut submissions) = self.submissions.lock() else {
            return;
        };
        match (outcome, job) {
            (Ok(ControlResponse::Submitted { message_id, .. }), Job::Request { index }) => {
                submissions[index].message_id = Some(message_id.clone());
                if let Ok(mut by_id) = self.by_id.lock() {
                    by_id.insert(message_id, index);
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(ControlResponse::Replied { status_message_id }), Job::Reply { index }) => {
                let original = submissions[index].clone();
                let reply_index = submissions.len();
                submissions.push(Submission {
                    marker: None,
                    sender: original.recipient,
                    recipient: original.sender,
                    submit_unix_us: unix_us(),
                    message_id: Some(status_message_id.clone()),
                    status_reply: true,
                    failed: None,
                    ambiguous: false,
                    attempts: 1,
                    reply_attempts: 0,
                });
                if let Ok(mut by_id) = self.by_id.lock() {
                    by_id.insert(status_message_id, reply_index);
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Ok(response), job) => {
                // Refused by the node (outbox full, …): the officer hears it at once.
                let index = match job {
                    Job::Request { index } | Job::Reply { index } => index,
                };
                if matches!(job, Job::Request { .. }) {
                    submissions[index].failed = Some(format!("{response:?}"));
                }
                self.jobs_done.fetch_add(1, Ordering::Relaxed);
            }
            (Err((sent, error)), job) => {
                let request_index = match &job {
                    Job::Request { index } => Some(*index),
                    Job::Reply { .. } => None,
                };
                if let Some(index) = request_index {
                    // The request may have reached the node before it died.
                    submissions[index].ambiguous |= sent;
                }
                let attempts = if request_index.is_some() {
                    submissions[index].attempts
                } else {
                    submissions[index].reply_attempts
                };
                let closing =
                    self.closing.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed);
                if attempts < MAX_SUBMIT_ATTEMPTS && !closing {
                    drop(submissions);
                    self.retry(job);
                } else {
                    if let Some(index) = request_index {
                        submissions[index].failed = Some(error);
                    }
                    self.jobs_done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads (and clears) every live node's delivery log; schedules some status replies.
    pub(super) fn drain_logs(&self, rng: &mut ChaCha8Rng, job_tx: &mpsc::Sender<(Instant, Job)>) {
        for (node, slot) in self.slots.iter().enumerate() {
            if !slot.up.load(Ordering::Relaxed) {
                continue;
            }
            let Ok(ControlResponse::DeliveryLog {
                entries,
                duplicates_suppressed,
                ..
            }) = self.request(node, &ControlRequest::DeliveryLog { drain: true })
            else {
                continue;
            };
            if let Ok(mut duplicates) = self.duplicates.lock() {
                *duplicates += duplicates_suppressed;
            }
            let mut fresh = Vec::new();
            if let Ok(mut deliveries) = self.deliveries.lock() {
                for entry in entries {
                    if !deliveries.contains_key(&entry.message_id) {
                        fresh.push(entry.message_id.clone());
                    }
                    deliveries
                        .entry(entry.message_id)
                        .or_insert(entry.delivered_unix_us);
                }
            }
            if !self.replies_open.load(Ordering::Relaxed) {
                continue;
            }
            let by_id = self
                .by_id
                .lock()
                .map(|by_id| by_id.clone())
                .unwrap_or_default();
            for id in fresh {
                let Some(index) = by_id.get(&id) else {
                    continue;
                };
                let is_request = self
                    .submissions
                    .lock()
                    .map(|submissions| !submissions[*index].status_reply)
                    .unwrap_or(false);
                if is_request && rng.random_range(0..6u32) == 0 {
                    self.jobs_total.fetch_add(1, Ordering::Relaxed);
                    let _ = job_tx.send((Instant::now(), Job::Reply { index: *index }));
                }
            }
        }
    }
}

pub(super) fn kind_of(marker: &str) -> WorkKind {
    // The kind is encoded in the marker's last character so a retry rebuilds the same payload.
    match marker.chars().last() {
        Some('E') => WorkKind::Emergency,
        Some('T') => WorkKind::TrafficData,
        Some('F') => WorkKind::FreeText,
        _ => WorkKind::Preservation,
    }
}

pub(super) struct Planned {
    pub(super) at: Duration,
    pub(super) sender: usize,
    pub(super) recipient: usize,
    pub(super) marker: String,
}

/// The workload: `messages` requests over `messages / rate` seconds, in bursts.
pub(super) fn plan_workload(seed: u64, members: usize, messages: usize, rate: f64) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x776f_726b);
    let span = messages as f64 / rate.max(0.1);
    let mut planned = Vec::with_capacity(messages);
    let mut index = 0;
    while index < messages {
        let burst = rng.random_range(1..=8usize).min(messages - index);
        let at = rng.random_range(0.0..span.max(0.001));
        let hot_sender = rng.random_range(0..members);
        let hot_recipient = rng.random_range(0..members);
        let sender_burst = rng.random_bool(0.5);
        for _ in 0..burst {
            let (sender, recipient) = if sender_burst {
                (
                    hot_sender,
                    (hot_sender + rng.random_range(1..members)) % members,
                )
            } else {
                (
                    (hot_recipient + rng.random_range(1..members)) % members,
                    hot_recipient,
                )
            };
            let kind = match rng.random_range(0..100u32) {
                0..70 => 'P',
                70..80 => 'E',
                80..85 => 'T',
                _ => 'F',
            };
            planned.push(Planned {
                at: Duration::from_secs_f64(at + rng.random_range(0.0..0.5)),
                sender,
                recipient,
                marker: format!("{MARKER_PREFIX}{seed:016x}-{index:06}-{kind}"),
            });
            index += 1;
        }
    }
    planned.sort_by_key(|planned| planned.at);
    planned
}
