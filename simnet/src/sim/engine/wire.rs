//! The virtual network seen from the simulator: a core's transmits become requests, requests
//! arrive (or are lost, duplicated, cut), are answered, and every request ends in exactly one
//! outcome for its sender.

use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::Store;
use quickfreeze_proto::frame::{Batch, Frame};
use quickfreeze_proto::receipt::ReceiptKind;
use rand::RngExt;

use crate::sim::invariants::Violation;

use super::{harness, uniform, Simulator};
use crate::sim::network::{Request, SimEvent};
use crate::sim::world::NodeKind;

impl Simulator {
    // ----- the network -------------------------------------------------------------------

    pub(super) fn transmit(
        &mut self,
        node: usize,
        to: NodeId,
        request_id: u64,
        bytes: Vec<u8>,
    ) -> Result<(), Violation> {
        let Some(&to) = self.world.index_of.get(&to) else {
            return Err(harness(
                self.now_ms,
                format!("node {node} transmitted to {to}, who is not in the roster"),
            ));
        };
        self.report.requests_sent += 1;
        self.record(&[node as u64, to as u64, request_id, bytes.len() as u64]);
        if !self.world.dialable[node] {
            // The connection this node opens stays usable for a while after the exchange.
            let until_ms =
                self.now_ms + self.config.request_timeout_ms + self.config.connection_idle_ms;
            self.connections.insert((node, to), until_ms);
        }
        self.count_transmissions(node, &bytes)?;
        let incarnation = self.nodes[node].incarnation;
        let deadline_ms = self.now_ms + self.config.request_timeout_ms;
        let profile = &self.config.profile;
        let (loss, duplication) = (profile.request_loss, profile.request_duplication);
        if !self.liveness && loss > 0.0 && self.net_rng.random_bool(loss) {
            self.report.requests_lost += 1;
            self.queue.push(
                deadline_ms,
                SimEvent::Outcome {
                    node,
                    incarnation,
                    request_id,
                    response: None,
                },
            );
            return Ok(());
        }
        let arrive_ms = self.now_ms + self.latency_ms(node, to);
        if !self.liveness && duplication > 0.0 && self.net_rng.random_bool(duplication) {
            self.report.requests_duplicated += 1;
            let later_ms = arrive_ms + uniform(&mut self.net_rng, 0, 1_000);
            self.queue.push(
                later_ms,
                SimEvent::RequestArrive(Box::new(Request {
                    from: node,
                    from_incarnation: incarnation,
                    to,
                    request_id,
                    bytes: bytes.clone(),
                    sent_at_ms: self.now_ms,
                    duplicate: true,
                })),
            );
        }
        self.queue.push(
            arrive_ms,
            SimEvent::RequestArrive(Box::new(Request {
                from: node,
                from_incarnation: incarnation,
                to,
                request_id,
                bytes,
                sent_at_ms: self.now_ms,
                duplicate: false,
            })),
        );
        Ok(())
    }

    /// Counts each sender's Deliver/Handoff transmissions of its own messages (for retries).
    pub(super) fn count_transmissions(
        &mut self,
        node: usize,
        bytes: &[u8],
    ) -> Result<(), Violation> {
        let batch = Batch::from_bytes(bytes).map_err(|error| {
            harness(
                self.now_ms,
                format!("node {node} transmitted an undecodable batch: {error}"),
            )
        })?;
        let me = self.world.ids[node];
        for frame in &batch.frames {
            let (Frame::Deliver(envelope) | Frame::Handoff(envelope)) = frame else {
                continue;
            };
            if matches!(frame, Frame::Handoff(_)) {
                self.report.relay_handoffs += 1;
            }
            if envelope.header.sender == me {
                if let Some(truth) = self
                    .truth
                    .messages
                    .get_mut(&(me, envelope.header.message_id))
                {
                    truth.transmissions += 1;
                }
            }
        }
        Ok(())
    }

    pub(super) fn fail_request(&mut self, request: &Request) {
        if request.duplicate {
            return;
        }
        let deadline_ms = (request.sent_at_ms + self.config.request_timeout_ms).max(self.now_ms);
        self.queue.push(
            deadline_ms,
            SimEvent::Outcome {
                node: request.from,
                incarnation: request.from_incarnation,
                request_id: request.request_id,
                response: None,
            },
        );
    }

    pub(super) fn on_request(&mut self, request: Request) -> Result<(), Violation> {
        let to = request.to;
        if self.nodes[to].kind == NodeKind::Hostile {
            let answer = match (&mut self.hostile, self.liveness) {
                (Some(hostile), false) => hostile.answer(&mut self.hostile_rng, &self.world),
                _ => None,
            };
            match answer {
                Some(bytes) => self.respond(&request, bytes),
                None => self.fail_request(&request),
            }
            return Ok(());
        }
        if self.nodes[to].core.is_none() || self.partitions.blocks(request.from, to) {
            self.fail_request(&request);
            return Ok(());
        }
        if !self.can_reach(request.from, to) {
            self.report.requests_undialable += 1;
            self.fail_request(&request);
            return Ok(());
        }
        self.inspect_request(&request);
        let now = self.local_now(to);
        let from_id = self.world.ids[request.from];
        let response = self
            .core_mut(to)?
            .handle_request(now, from_id, &request.bytes);
        let bug = self.config.bug_skip_flush_before_respond;
        let crash_probability = self.config.profile.crash_during_request;
        let crash = !self.liveness
            && crash_probability > 0.0
            && self.fault_rng.random_bool(crash_probability);
        if bug {
            // Deliberately wrong: the answer and the events leave before the flush.
            self.respond(&request, response.clone());
            self.release(to)?;
        }
        if crash {
            // kill -9 between the core's writes and the shell's flush.
            self.report.crashes_during_request += 1;
            self.crash(to)?;
            if !bug {
                self.fail_request(&request);
            }
            return Ok(());
        }
        self.flush(to)?;
        if let Some(down_ms) = self.crash_after_store[to] {
            let carries_message = Batch::from_bytes(&request.bytes).is_ok_and(|batch| {
                batch
                    .frames
                    .iter()
                    .any(|frame| matches!(frame, Frame::Deliver(_) | Frame::Handoff(_)))
            });
            if carries_message {
                // Scripted: stored and flushed, then dead before the receipt leaves.
                self.crash_after_store[to] = None;
                self.fail_request(&request);
                return self.crash_for(to, down_ms);
            }
        }
        if !bug {
            self.respond(&request, response);
        }
        self.release(to)
    }

    /// Duplicate and hand-off accounting, and what the hostile member gets to see.
    pub(super) fn inspect_request(&mut self, request: &Request) {
        if Some(request.from) == self.world.hostile {
            return;
        }
        let Ok(batch) = Batch::from_bytes(&request.bytes) else {
            return;
        };
        let Some(store) = self.nodes[request.to].store() else {
            return;
        };
        let mut duplicates = 0;
        let mut relay_duplicates = 0;
        for frame in &batch.frames {
            match frame {
                Frame::Deliver(envelope) => {
                    let header = &envelope.header;
                    if matches!(
                        store.get_inbox(&header.sender, &header.message_id),
                        Ok(Some(_))
                    ) {
                        duplicates += 1;
                    }
                }
                Frame::Handoff(envelope) => {
                    let header = &envelope.header;
                    if matches!(
                        store.get_relay(&header.sender, &header.message_id),
                        Ok(Some(_))
                    ) {
                        relay_duplicates += 1;
                    }
                }
                _ => {}
            }
        }
        self.report.duplicates_suppressed += duplicates;
        self.report.relay_duplicate_handoffs += relay_duplicates;
        if let Some(hostile) = self.hostile.as_mut() {
            for frame in &batch.frames {
                match frame {
                    Frame::Deliver(envelope) | Frame::Handoff(envelope) => {
                        hostile.observe_envelope(envelope)
                    }
                    Frame::Receipt(receipt) => hostile.observe_receipt(receipt),
                    _ => {}
                }
            }
        }
    }

    /// The response leaves node `request.to`: note the receipts it releases, then put it on
    /// the wire (or lose it).
    pub(super) fn respond(&mut self, request: &Request, bytes: Vec<u8>) {
        let responder = request.to;
        if self.nodes[responder].kind != NodeKind::Hostile {
            if let Ok(batch) = Batch::from_bytes(&bytes) {
                let me = self.world.ids[responder];
                for frame in &batch.frames {
                    let Frame::Receipt(receipt) = frame else {
                        continue;
                    };
                    if receipt.body.signer != me {
                        continue;
                    }
                    let key = (receipt.body.sender, receipt.body.message_id);
                    match receipt.body.kind {
                        ReceiptKind::Delivered => {
                            self.truth.released_delivery[responder].insert(key);
                        }
                        ReceiptKind::Custody => {
                            self.truth.released_custody[responder].insert(key);
                        }
                    }
                    if let Some(hostile) = self.hostile.as_mut() {
                        hostile.observe_receipt(receipt);
                    }
                }
            }
        }
        if request.duplicate {
            return; // the network's copy: its answer goes nowhere
        }
        let loss = self.config.profile.response_loss;
        if !self.liveness && loss > 0.0 && self.net_rng.random_bool(loss) {
            self.report.responses_lost += 1;
            self.fail_request(request);
            return;
        }
        if self.partitions.blocks(responder, request.from) {
            self.fail_request(request);
            return;
        }
        let arrive_ms = self.now_ms + self.latency_ms(responder, request.from);
        if arrive_ms > request.sent_at_ms + self.config.request_timeout_ms {
            self.fail_request(request);
            return;
        }
        self.queue.push(
            arrive_ms,
            SimEvent::Outcome {
                node: request.from,
                incarnation: request.from_incarnation,
                request_id: request.request_id,
                response: Some(bytes),
            },
        );
    }

    pub(super) fn on_outcome(
        &mut self,
        node: usize,
        incarnation: u32,
        request_id: u64,
        response: Option<Vec<u8>>,
    ) -> Result<(), Violation> {
        if Some(node) == self.world.hostile {
            return self.on_hostile_outcome(request_id, response);
        }
        if self.nodes[node].core.is_none() || self.nodes[node].incarnation != incarnation {
            self.report.outcomes_dropped_after_crash += 1;
            return Ok(());
        }
        let now = self.local_now(node);
        let core = self.core_mut(node)?;
        match response {
            Some(bytes) => core.handle_response(now, request_id, &bytes),
            None => {
                core.handle_request_failed(now, request_id, "request timed out");
                self.report.requests_failed += 1;
            }
        }
        self.flush(node)?;
        self.release(node)
    }
}
