//! The end-to-end tests of quickfreeze live in this crate's `tests/` directory: each starts real
//! nodes (in-process daemons or `quickfreeze` child processes) on loopback and drives them as an
//! officer, a script or a hostile peer would. Helpers they share are in `tests/common/`; the test
//! networks themselves come from `quickfreeze_node::testnet`, the one builder every harness uses.
//!
//! The library itself is empty: the crate exists so that `cargo test --workspace` builds the
//! binary under test (`quickfreeze-under-test`, compiled from `node/src/main.rs`) and runs them.
