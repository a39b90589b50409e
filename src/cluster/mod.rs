//! Several govledger processes on one JetStream cluster: what they share
//! besides the stream.
//!
//! Layout:
//! - [`lease`]: leases in a KV bucket (one holder per source's syncs and per
//!   source's actions; taken over when not renewed), the pure rule and the I/O;
//! - [`control`]: triggers sent from an `api` node to the ingest processes;
//! - [`consistency`]: read-your-writes, a call that names a stream sequence
//!   waits (bounded) until this node's projection has applied it.

pub mod consistency;
pub mod control;
pub mod lease;
