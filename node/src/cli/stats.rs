//! `stats`: efficiency statistics per counterpart country, on a running node or on a stopped
//! node's store.

use anyhow::{anyhow, Result};
use quickfreeze_keys::Timestamp;

use super::access::Access;
use super::{print_json, unexpected, Target};
use crate::control::{ControlRequest, ControlResponse};
use crate::text::age;

pub(super) fn stats(since: &str, target: &Target) -> Result<()> {
    let since = crate::audit::parse_since(since, Timestamp::now())
        .map_err(|error| anyhow!("--since: {error}"))?;
    let mut access = Access::open(&target.data_dir)?;
    let response = access.request(&ControlRequest::Stats { since_ms: since.0 })?;
    if target.json {
        return print_json(&response);
    }
    let ControlResponse::Stats { rows } = response else {
        return unexpected(response);
    };
    let time = |value: Option<f64>| {
        value.map_or_else(|| "-".to_string(), |seconds| age(seconds.round() as u64))
    };
    outln!("requests since {since}; times are medians");
    outln!(
        "{:<2}  {:>5}  {:>5}  {:>8}  {:>9}  {:>9}  {:>11}  {:>11}  refusals",
        "cc",
        "sent",
        "recv",
        "receipt",
        "their ack",
        "our ack",
        "their status",
        "our status"
    );
    for row in &rows {
        let refusals = |map: &std::collections::BTreeMap<String, u64>| {
            map.iter()
                .map(|(ground, count)| format!("{ground} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut refused = Vec::new();
        if !row.refusals_received.is_empty() {
            refused.push(format!("by them: {}", refusals(&row.refusals_received)));
        }
        if !row.refusals_given.is_empty() {
            refused.push(format!("by us: {}", refusals(&row.refusals_given)));
        }
        outln!(
            "{:<2}  {:>5}  {:>5}  {:>8}  {:>9}  {:>9}  {:>11}  {:>11}  {}",
            row.country,
            row.sent,
            row.received,
            time(row.median_receipt_s),
            time(row.median_their_ack_s),
            time(row.median_our_ack_s),
            time(row.median_their_status_s),
            time(row.median_our_status_s),
            if refused.is_empty() {
                "-".to_string()
            } else {
                refused.join("; ")
            }
        );
    }
    if rows.is_empty() {
        outln!("(no requests sent or received in that time)");
    }
    Ok(())
}
