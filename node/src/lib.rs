//! The quickfreeze daemon and console: the libp2p shell around the delivery core, the sled store,
//! the control socket, and the command line.
//!
//! - [`attachments`]: files attached to requests, read from disk and saved under safe names.
//! - [`network`]: libp2p transport that moves opaque frames between roster members only.
//! - [`store`]: the sled implementation of the core's `Store`, with group commit.
//! - [`daemon`]: the one task that owns network, core and store.
//! - [`control`]: the console's typed protocol over the Unix socket, and its client.
//! - [`config`]: the node's TOML configuration and data-directory layout.
//! - [`testnet`]: local test networks (keys, signed roster, configs) run as child processes.
//! - [`cli`]: the `quickfreeze` commands; [`demo`]: the embedded local network.
//! - [`console`]: the duty officer's live terminal UI (`quickfreeze console`).
//! - [`logging`], [`service`], [`doctor`]: running in production: journald-friendly logs,
//!   systemd readiness and watchdog, and `quickfreeze doctor`.
//! - [`evidence`]: a case's evidence file for a court (`quickfreeze evidence export/verify`).
//! - [`web`]: the duty officer's console in a browser (`quickfreeze web`, `quickfreeze officer`).

#![deny(unreachable_pub)]

pub mod attachments;
pub mod audit;
pub mod audit_head;
mod audit_view;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod deadlines;
pub mod demo;
pub mod doctor;
pub mod evidence;
pub mod integrity;
pub mod logging;
pub mod network;
mod probe;
pub mod prometheus;
pub mod service;
pub mod stats;
pub mod store;
pub mod testnet;
mod text;
pub mod web;
