//! Request payloads (filled in by the payload work).
