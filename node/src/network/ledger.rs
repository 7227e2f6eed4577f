//! Counts refusals and misbehaviour per offender (per member, per address for strangers) and
//! turns them into at most one WARN line per interval.
//!
//! Nothing a peer or stranger does may cost a log line of its own: the network records each
//! event here, and the owner of the [`Ledger`] writes [`Ledger::take_summary`] when it is due.
//! The first event after a quiet interval is summarised at once (so an operator sees trouble
//! start without waiting); later ones wait for the end of the interval. Both the counts of the
//! current interval and the totals since start hold at most a fixed number of offenders; the
//! rest are counted together as "other sources", so an attacker with many addresses cannot grow
//! them either.

use std::{collections::BTreeMap, fmt, time::Duration};

use libp2p::PeerId;
use tokio::time::Instant;

use super::guard::Source;

/// Offenders named one by one in the counts of one interval; further ones are lumped together.
const MAX_OFFENDERS_PER_WINDOW: usize = 256;
/// Offenders kept one by one in the totals since start.
const MAX_OFFENDERS_IN_TOTALS: usize = 1024;
/// Offenders named in one summary line (the ones with most events); the rest are summed up.
const MAX_OFFENDERS_PER_LINE: usize = 8;

/// What a peer or stranger did that was refused or counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Offense {
    /// A member's frame that the application refused (reported by the owner, see
    /// `Network::note_misbehaviour`).
    JunkFrame,
    /// A member's frame whose length prefix exceeded the maximum.
    OversizedFrame,
    /// A member's frame that ended before its announced length.
    TruncatedFrame,
    /// A member's frame that did not arrive complete within half the request timeout.
    StalledStream,
    /// A member's stream beyond the per-connection stream limit. libp2p's request_response drops
    /// such a stream without telling its owner, so nothing in this crate counts it yet; an owner
    /// that learns of one may report it through `Network::note_misbehaviour`.
    OverLimitStream,
    /// A member's connection beyond the per-peer connection limit (a third connection).
    ExtraConnection,
    /// A completed handshake from a peer that is not in the roster.
    RefusedDial,
    /// A connection refused because its source (or everyone) held too many handshakes.
    PendingLimit,
    /// A connection that did not finish its handshake within the deadline.
    HandshakeTimeout,
    /// A connection whose handshake failed (not Noise, wrong protocol, reset).
    HandshakeFailed,
}

impl Offense {
    /// Every offense, in a fixed order (for metrics).
    pub const ALL: [Offense; 10] = [
        Offense::JunkFrame,
        Offense::OversizedFrame,
        Offense::TruncatedFrame,
        Offense::StalledStream,
        Offense::OverLimitStream,
        Offense::ExtraConnection,
        Offense::RefusedDial,
        Offense::PendingLimit,
        Offense::HandshakeTimeout,
        Offense::HandshakeFailed,
    ];

    /// A stable snake_case name, for metrics labels and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Offense::JunkFrame => "junk_frame",
            Offense::OversizedFrame => "oversized_frame",
            Offense::TruncatedFrame => "truncated_frame",
            Offense::StalledStream => "stalled_stream",
            Offense::OverLimitStream => "over_limit_stream",
            Offense::ExtraConnection => "extra_connection",
            Offense::RefusedDial => "refused_dial",
            Offense::PendingLimit => "pending_limit",
            Offense::HandshakeTimeout => "handshake_timeout",
            Offense::HandshakeFailed => "handshake_failed",
        }
    }

    /// Words for the summary line, after a count.
    fn words(self) -> &'static str {
        match self {
            Offense::JunkFrame => "junk frames",
            Offense::OversizedFrame => "oversized frames",
            Offense::TruncatedFrame => "truncated frames",
            Offense::StalledStream => "stalled streams",
            Offense::OverLimitStream => "streams over the limit",
            Offense::ExtraConnection => "connections over the per-peer limit",
            Offense::RefusedDial => "refused dials (not in the roster)",
            Offense::PendingLimit => "connections refused at the handshake limit",
            Offense::HandshakeTimeout => "handshakes timed out",
            Offense::HandshakeFailed => "handshakes failed",
        }
    }
}

impl fmt::Display for Offense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who did it: a member by its peer id, anyone else by where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Offender {
    /// A roster member.
    Member(PeerId),
    /// A stranger (not yet identified, or not a member), by source address.
    Address(Source),
    /// Offenders beyond the number kept one by one.
    Others,
}

/// Counts per offense.
pub type Counts = BTreeMap<Offense, u64>;

/// The counters and the rate-limited summary. See the module docs.
#[derive(Debug)]
pub struct Ledger {
    interval: Duration,
    /// When the last summary line was written.
    last_summary: Option<Instant>,
    /// When the first event of the current window happened.
    window_start: Option<Instant>,
    window: BTreeMap<Offender, Counts>,
    totals: BTreeMap<Offender, Counts>,
    /// Names for members in summaries (e.g. their country), set by the owner.
    labels: BTreeMap<PeerId, String>,
}

impl Ledger {
    /// A ledger that writes at most one summary per `interval`.
    pub fn new(interval: Duration) -> Ledger {
        Ledger {
            interval,
            last_summary: None,
            window_start: None,
            window: BTreeMap::new(),
            totals: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Replaces the names used for members in summary lines.
    pub fn set_labels(&mut self, labels: BTreeMap<PeerId, String>) {
        self.labels = labels;
    }

    /// Counts one event.
    pub fn record(&mut self, offender: Offender, offense: Offense, now: Instant) {
        self.record_many(offender, offense, 1, now);
    }

    /// Counts `count` events of one kind.
    pub fn record_many(&mut self, offender: Offender, offense: Offense, count: u64, now: Instant) {
        if count == 0 {
            return;
        }
        self.window_start.get_or_insert(now);
        add(
            &mut self.window,
            MAX_OFFENDERS_PER_WINDOW,
            offender,
            offense,
            count,
        );
        add(
            &mut self.totals,
            MAX_OFFENDERS_IN_TOTALS,
            offender,
            offense,
            count,
        );
    }

    /// When the next summary is due, if anything is waiting to be summarised.
    pub fn due(&self) -> Option<Instant> {
        let window_start = self.window_start?;
        Some(match self.last_summary {
            Some(last) => (last + self.interval).max(window_start),
            None => window_start,
        })
    }

    /// The summary line, if one is due at `now`; the window's counts start again from zero.
    pub fn take_summary(&mut self, now: Instant) -> Option<String> {
        if self.due()? > now {
            return None;
        }
        let since = self.window_start.unwrap_or(now);
        let window = std::mem::take(&mut self.window);
        self.window_start = None;
        self.last_summary = Some(now);
        Some(self.describe(now.saturating_duration_since(since), window))
    }

    /// Every count since start, by offender.
    pub fn totals(&self) -> &BTreeMap<Offender, Counts> {
        &self.totals
    }

    /// The counts since start for one member (empty if it did nothing wrong).
    pub fn member_totals(&self, peer: &PeerId) -> Counts {
        self.totals
            .get(&Offender::Member(*peer))
            .cloned()
            .unwrap_or_default()
    }

    fn describe(&self, span: Duration, window: BTreeMap<Offender, Counts>) -> String {
        let mut offenders: Vec<(Offender, Counts, u64)> = window
            .into_iter()
            .map(|(offender, counts)| {
                let sum = counts.values().sum();
                (offender, counts, sum)
            })
            .collect();
        // Most events first; the map order breaks ties, so the line is the same run to run.
        offenders.sort_by_key(|offender| std::cmp::Reverse(offender.2));
        let mut parts = Vec::new();
        let (mut more_sources, mut more_events) = (0usize, 0u64);
        for (offender, counts, sum) in offenders {
            if parts.len() >= MAX_OFFENDERS_PER_LINE {
                more_sources += 1;
                more_events += sum;
                continue;
            }
            let name = self.name(&offender);
            parts.push(
                counts
                    .iter()
                    .map(|(offense, count)| format!("{count} {} from {name}", offense.words()))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        if more_sources > 0 {
            parts.push(format!(
                "{more_events} more from {more_sources} other sources"
            ));
        }
        format!(
            "in the last {} s: {}",
            span.as_secs().max(1),
            parts.join(", ")
        )
    }

    fn name(&self, offender: &Offender) -> String {
        match offender {
            Offender::Member(peer) => match self.labels.get(peer) {
                Some(label) => format!("member {label} ({})", short(peer)),
                None => format!("member {}", short(peer)),
            },
            Offender::Address(source) => source.to_string(),
            Offender::Others => "other sources".to_owned(),
        }
    }
}

/// A peer id shortened for a log line: its first 8 and last 4 characters.
fn short(peer: &PeerId) -> String {
    let text = peer.to_base58();
    match (text.get(..8), text.get(text.len().saturating_sub(4)..)) {
        (Some(head), Some(tail)) if text.len() > 12 => format!("{head}…{tail}"),
        _ => text,
    }
}

fn add(
    map: &mut BTreeMap<Offender, Counts>,
    max_offenders: usize,
    offender: Offender,
    offense: Offense,
    count: u64,
) {
    let key = if map.contains_key(&offender) || map.len() < max_offenders {
        offender
    } else {
        Offender::Others
    };
    let entry = map.entry(key).or_default().entry(offense).or_default();
    *entry = entry.saturating_add(count);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn first_event_is_summarised_at_once_then_at_most_once_per_interval() {
        let start = Instant::now();
        let mut ledger = Ledger::new(MINUTE);
        assert_eq!(ledger.due(), None);
        let member = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        ledger.record(Offender::Member(member), Offense::JunkFrame, start);
        let first = ledger.take_summary(start).unwrap();
        assert!(first.contains("1 junk frames from member"), "{first}");

        // 10,920 more over 65 s: nothing until the minute is over, then one line.
        let mut lines = 0;
        for second in 0..130u64 {
            let now = start + Duration::from_millis(second * 500 + 1);
            for _ in 0..84 {
                ledger.record(Offender::Member(member), Offense::JunkFrame, now);
            }
            if let Some(line) = ledger.take_summary(now) {
                lines += 1;
                assert!(line.contains("junk frames"));
            }
        }
        assert_eq!(lines, 1);
        // The events after that line wait for the next minute.
        assert!(ledger.take_summary(start + MINUTE + MINUTE / 2).is_none());
        let end = start + 2 * MINUTE + Duration::from_millis(1);
        let last = ledger.take_summary(end).unwrap();
        assert!(
            last.starts_with("in the last 59 s: 756 junk frames"),
            "{last}"
        );
        assert_eq!(
            ledger.member_totals(&member)[&Offense::JunkFrame],
            1 + 130 * 84
        );
        assert_eq!(ledger.due(), None);
    }

    #[test]
    fn summary_names_members_with_labels_and_addresses_by_count() {
        let now = Instant::now();
        let mut ledger = Ledger::new(MINUTE);
        let member = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        ledger.set_labels([(member, "DE".to_owned())].into());
        ledger.record_many(Offender::Member(member), Offense::JunkFrame, 10_000, now);
        let stranger = Offender::Address(Source::V4(Ipv4Addr::new(10, 0, 0, 5)));
        ledger.record_many(stranger, Offense::RefusedDial, 340, now);
        let line = ledger.take_summary(now).unwrap();
        assert!(
            line.contains("10000 junk frames from member DE (12D3KooW"),
            "{line}"
        );
        assert!(
            line.contains(", 340 refused dials (not in the roster) from 10.0.0.5"),
            "{line}"
        );
    }

    #[test]
    fn many_sources_stay_bounded_in_memory_and_in_the_line() {
        let now = Instant::now();
        let mut ledger = Ledger::new(MINUTE);
        for index in 0..5_000u32 {
            let source = Source::V4(Ipv4Addr::from(0x0a00_0000 + index));
            ledger.record(Offender::Address(source), Offense::PendingLimit, now);
        }
        assert_eq!(ledger.totals().len(), MAX_OFFENDERS_IN_TOTALS + 1);
        let others = ledger.totals()[&Offender::Others][&Offense::PendingLimit];
        assert_eq!(others, 5_000 - MAX_OFFENDERS_IN_TOTALS as u64);
        let line = ledger.take_summary(now).unwrap();
        assert_eq!(line.matches(" from ").count(), MAX_OFFENDERS_PER_LINE + 1);
        // Every event is accounted for in the line.
        let summed: u64 = line
            .split(", ")
            .map(|part| {
                let part = part.trim_start_matches("in the last 1 s: ");
                part.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(summed, 5_000);
        assert!(line.len() < 1_000, "{line}");
    }
}
