//! Free space on the data directory's filesystem: the low-water mark below which the node
//! refuses new submissions and incoming deliveries (both retryable), so that sled never meets a
//! full disk (where it blocks forever instead of failing), and the alert when it crosses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quickfreeze_proto::frame::{Batch, Frame};
use quickfreeze_proto::MessageId;

use crate::config::StoreSection;

/// How long a measurement is trusted before the next input measures again.
const MEASURE_EVERY: Duration = Duration::from_millis(250);

/// The free space and the mark it is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Space {
    /// Bytes free for an unprivileged writer.
    pub(super) free: u64,
    /// The low-water mark (0: the check is off).
    pub(super) mark: u64,
}

impl Space {
    fn is_low(&self) -> bool {
        self.mark > 0 && self.free < self.mark
    }
}

/// What changed at a measurement.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Crossing {
    /// Free space fell below the mark.
    BecameLow,
    /// Free space is above the mark again.
    Recovered,
}

/// Watches free space on one directory.
pub(super) struct DiskWatch {
    dir: PathBuf,
    store: StoreSection,
    last: Option<(Instant, Space)>,
    low: bool,
    /// Measurement failures in a row (the directory vanished, ...), for the log.
    pub(super) failures: u64,
}

impl DiskWatch {
    pub(super) fn new(dir: &Path, store: &StoreSection) -> DiskWatch {
        DiskWatch {
            dir: dir.to_path_buf(),
            store: store.clone(),
            last: None,
            low: false,
            failures: 0,
        }
    }

    /// Whether the check is on at all.
    pub(super) fn enabled(&self) -> bool {
        self.store.low_water_mib > 0 || self.store.low_water_percent > 0
    }

    /// Measures now (statvfs) and reports a crossing of the mark.
    pub(super) fn measure(&mut self, now: Instant) -> Option<Crossing> {
        if !self.enabled() {
            return None;
        }
        let measured = fs2::available_space(&self.dir)
            .and_then(|free| fs2::total_space(&self.dir).map(|total| (free, total)));
        let space = match measured {
            Ok((free, total)) => {
                self.failures = 0;
                Space {
                    free,
                    mark: self.store.low_water_bytes(total),
                }
            }
            Err(_) => {
                // Keep the last state: an unreadable statvfs says nothing about the space.
                self.failures += 1;
                return None;
            }
        };
        self.last = Some((now, space));
        let low = space.is_low();
        let crossing = match (self.low, low) {
            (false, true) => Some(Crossing::BecameLow),
            (true, false) => Some(Crossing::Recovered),
            _ => None,
        };
        self.low = low;
        crossing
    }

    /// Measures again if the last measurement is older than [`MEASURE_EVERY`].
    pub(super) fn refresh(&mut self, now: Instant) -> Option<Crossing> {
        match self.last {
            Some((at, _)) if now.duration_since(at) < MEASURE_EVERY => None,
            _ => self.measure(now),
        }
    }

    /// The last measurement.
    pub(super) fn space(&self) -> Option<Space> {
        self.last.map(|(_, space)| space)
    }

    /// The refusal to give while below the mark, `None` otherwise.
    pub(super) fn refusal(&self) -> Option<String> {
        if !self.low {
            return None;
        }
        let space = self.space()?;
        Some(format!(
            "disk nearly full: {} MiB free on {}, below the low-water mark {} MiB; free space and retry",
            space.free / (1024 * 1024),
            self.dir.display(),
            space.mark.div_ceil(1024 * 1024),
        ))
    }
}

/// The answer to a peer's batch while the disk is low: every frame refused as retryable, so the
/// sender keeps the message and tries again later (nothing is stored, so nothing is lost and no
/// receipt is given). A batch that does not decode gets an empty answer, as the core would.
pub(super) fn refuse_batch(roster_serial: u64, request: &[u8], reason: &str) -> Vec<u8> {
    let frames = match Batch::from_bytes(request) {
        Ok(batch) => batch
            .frames
            .iter()
            .map(|frame| Frame::refused(frame_message_id(frame), false, reason))
            .collect(),
        Err(_) => Vec::new(),
    };
    Batch::new(roster_serial, frames)
        .to_bytes()
        .unwrap_or_default()
}

fn frame_message_id(frame: &Frame) -> MessageId {
    match frame {
        Frame::Deliver(envelope) | Frame::Handoff(envelope) => envelope.header.message_id,
        Frame::Receipt(receipt) => receipt.body.message_id,
        Frame::Ack(message_id) | Frame::Refused { message_id, .. } => *message_id,
        Frame::RosterRequest
        | Frame::Roster(_)
        | Frame::Ignored
        | Frame::Serials { .. }
        | Frame::RevocationRequest { .. }
        | Frame::Revocations(_) => MessageId([0; 16]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_above_the_whole_disk_is_low_and_off_is_never_low() {
        let dir = tempfile::tempdir().expect("tempdir");
        let huge = StoreSection {
            low_water_mib: u64::MAX / (1024 * 1024),
            ..StoreSection::default()
        };
        let mut watch = DiskWatch::new(dir.path(), &huge);
        assert_eq!(watch.measure(Instant::now()), Some(Crossing::BecameLow));
        let refusal = watch.refusal().expect("refused while low");
        assert!(refusal.contains("disk nearly full"), "{refusal}");
        assert!(refusal.contains("free space and retry"), "{refusal}");
        // Still low: no second crossing.
        assert_eq!(watch.measure(Instant::now()), None);
        let off = StoreSection {
            low_water_mib: 0,
            low_water_percent: 0,
            ..StoreSection::default()
        };
        let mut watch = DiskWatch::new(dir.path(), &off);
        assert_eq!(watch.measure(Instant::now()), None);
        assert!(watch.refusal().is_none());
    }

    #[test]
    fn a_refused_batch_answers_every_frame_as_retryable() {
        let request = Batch::new(
            3,
            vec![Frame::Ack(MessageId([7; 16])), Frame::RosterRequest],
        )
        .to_bytes()
        .expect("encode");
        let answer =
            Batch::from_bytes(&refuse_batch(5, &request, "disk nearly full")).expect("decodes");
        assert_eq!(answer.frames.len(), 2);
        for frame in &answer.frames {
            assert!(
                matches!(
                    frame,
                    Frame::Refused {
                        permanent: false,
                        ..
                    }
                ),
                "{frame:?}"
            );
        }
        assert!(matches!(
            answer.frames[0],
            Frame::Refused { message_id, .. } if message_id == MessageId([7; 16])
        ));
    }
}
