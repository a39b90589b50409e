//! Getting events into the ledger.
//!
//! Layout:
//! - [`subject`]: source-id validation and the subject each event is published on;
//! - [`stream`]: the JetStream stream contract (immutable, discard-new, no max age)
//!   and the check that refuses a weaker existing stream;
//! - [`publisher`]: pipelined, deduplicated, retried publishing with back-pressure;
//! - [`backoff`]: the one jittered exponential backoff every retry loop uses;
//! - [`event`]: helpers that stamp an [`Event`](govledger_proto::v1::Event) envelope.
#![forbid(unsafe_code)]

pub mod actions;
pub mod backoff;
pub mod event;
pub mod failpoint;
pub mod http;
pub mod publisher;
pub mod ratelimit;
pub mod rest;
pub mod retry;
pub mod scim;
pub mod stream;
pub mod subject;
pub mod sync;

pub use publisher::{Publisher, PublisherConfig};
pub use stream::{StreamSpec, ensure_stream};
