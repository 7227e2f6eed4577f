//! Editable TOML forms (filled in by the payload work).
