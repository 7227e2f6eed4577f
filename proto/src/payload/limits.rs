//! The named limits of a payload: sizes, counts and the preservation period. Every other room of
//! `payload` reads them from here, and the crate re-exports them as `payload::MAX_*`.

/// Largest encoded payload accepted by [`Payload::to_bytes`](super::Payload::to_bytes) and
/// [`Payload::from_bytes`](super::Payload::from_bytes) (1 MiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1024 * 1024;
/// Limit for names, references, addresses and other one-line text, in UTF-8 bytes.
pub const MAX_SHORT_TEXT_BYTES: usize = 512;
/// Limit for narrative text (facts, descriptions, explanations), in UTF-8 bytes.
pub const MAX_LONG_TEXT_BYTES: usize = 64 * 1024;
/// Most data identifiers one preservation request may list.
pub const MAX_DATA_IDENTIFIERS: usize = 64;
/// Most attachments one preservation request may carry.
pub const MAX_ATTACHMENTS: usize = 8;
/// Largest single attachment, in bytes.
pub const MAX_ATTACHMENT_BYTES: usize = 256 * 1024;
/// Most bytes all attachments of one request may hold together; the rest of
/// [`MAX_PAYLOAD_BYTES`] is left for the text of the request.
pub const MAX_ATTACHMENTS_TOTAL_BYTES: usize = 768 * 1024;
/// Limit for the free-text condition of a request's handling codes, in UTF-8 bytes.
pub const MAX_HANDLING_TEXT_BYTES: usize = 1024;
/// Shortest preservation period a request may ask for (Art. 29(7)).
pub const MIN_PRESERVATION_DAYS: u32 = 60;
/// The preservation period a new request asks for unless the officer changes it.
pub const DEFAULT_PRESERVATION_DAYS: u32 = 90;
/// Longest line [`Payload::summary`](super::Payload::summary) returns, in characters.
pub const SUMMARY_MAX_CHARS: usize = 80;

/// The last instant RFC 3339 text can express (9999-12-31T23:59:59.999Z). `Timestamp`'s text
/// form panics beyond it, so validation rejects later times and summaries never print them.
pub(super) const LATEST_WRITABLE_MILLIS: u64 = 253_402_300_799_999;

/// Bytes bincode spends on the variant tag of [`Payload`](super::Payload); a request body may use
/// the rest.
pub(super) const PAYLOAD_TAG_BYTES: u64 = 4;
