//! Fault injection for test networks (`[testing] fault_injection`): link faults, the delivery
//! log and the duplicate count. Refused on every other node.

use quickfreeze_keys::NodeId;
use quickfreeze_proto::core::Store;

use super::Daemon;
use crate::control::ControlResponse;
use crate::network::LinkFault;

pub(super) fn fault_injection_refused() -> ControlResponse {
    ControlResponse::Error {
        message: "fault injection is disabled on this node; it is for test networks only \
                  (`[testing] fault_injection = true` in node.toml)"
            .into(),
    }
}

impl Daemon {
    /// Counts the deliveries and hand-offs in an inbound batch that the store already holds
    /// (testing only: it decodes the batch a second time).
    pub(super) fn count_duplicates(&mut self, frame: &[u8]) {
        use quickfreeze_proto::frame::{Batch, Frame};
        let Ok(batch) = Batch::from_bytes(frame) else {
            return;
        };
        let store = self.core.store();
        for frame in &batch.frames {
            let seen = match frame {
                Frame::Deliver(envelope) => matches!(
                    store.get_inbox(&envelope.header.sender, &envelope.header.message_id),
                    Ok(Some(_))
                ),
                Frame::Handoff(envelope) => matches!(
                    store.get_relay(&envelope.header.sender, &envelope.header.message_id),
                    Ok(Some(_))
                ),
                _ => false,
            };
            if seen {
                self.duplicates_suppressed += 1;
            }
        }
    }

    pub(super) fn inject_fault(
        &mut self,
        peers: &[String],
        drop_outbound: bool,
        drop_inbound: bool,
        delay_ms: u64,
    ) -> ControlResponse {
        if !self.fault_injection {
            return fault_injection_refused();
        }
        let mut parsed = Vec::with_capacity(peers.len());
        for text in peers {
            let peer = text
                .parse::<NodeId>()
                .map_err(|error| error.to_string())
                .and_then(|node| {
                    super::roster::peer_of(self.core.roster(), &node)
                        .ok_or_else(|| format!("{node} has no usable PeerId"))
                });
            match peer {
                Ok(peer) => parsed.push(peer),
                Err(message) => {
                    return ControlResponse::Error {
                        message: format!("peer `{text}`: {message}"),
                    }
                }
            }
        }
        let fault = LinkFault {
            drop_outbound,
            drop_inbound,
            delay_ms,
        };
        for peer in parsed {
            self.network.set_link_fault(peer, fault);
            if drop_outbound || drop_inbound {
                // A cut link takes its requests in flight with it.
                self.network.disconnect(peer);
            }
        }
        let faulty_peers = self
            .core
            .roster()
            .members
            .iter()
            .filter_map(|member| member.current_signing_key().to_peer_id().ok())
            .filter(|peer| self.network.link_fault(peer) != LinkFault::default())
            .count();
        ControlResponse::FaultsSet { faulty_peers }
    }

    pub(super) fn delivery_log_report(&mut self, drain: bool) -> ControlResponse {
        if !self.fault_injection {
            return fault_injection_refused();
        }
        let entries = self
            .delivery_log
            .iter()
            .map(|(message_id, unix_us)| crate::control::DeliveryLogEntry {
                message_id: message_id.to_string(),
                delivered_unix_us: *unix_us,
            })
            .collect();
        let response = ControlResponse::DeliveryLog {
            entries,
            overflowed: self.delivery_log_overflowed,
            duplicates_suppressed: self.duplicates_suppressed,
        };
        if drain {
            self.delivery_log.clear();
            self.delivery_log_overflowed = 0;
            self.duplicates_suppressed = 0;
        }
        response
    }
}
