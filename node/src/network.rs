//! libp2p network layer (in progress).
