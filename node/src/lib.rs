//! The quickfreeze daemon: the libp2p shell around the delivery core, the sled store, the control
//! socket and the console commands.

#![deny(unreachable_pub)]

pub mod network;
