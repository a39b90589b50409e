//! Getting events into the ledger.
//!
//! The stream contract, subjects, backoff and failpoints live in
//! [`govledger_stream`], which the projector shares.
//!
//! Layout:
//! - [`publisher`]: pipelined, deduplicated, retried publishing with back-pressure;
//! - [`event`]: helpers that stamp an [`Event`](govledger_proto::v1::Event) envelope;
//! - [`http`]: the HTTP client every connector reads and writes through;
//! - [`ratelimit`]: the per-source request rate limit;
//! - [`retry`]: the shared retry engine (attempts, budget, backoff);
//! - [`rest`]: the REST connector shape (paging, fields);
//! - [`scim`]: the SCIM connector;
//! - [`sync`]: the sync engine that turns a source's pages into events;
//! - [`actions`]: the action executor (request, attempt, verify, conclude);
//! - [`metrics`]: what the publisher counts for `/metrics` (page reads, publish latency);
//! - [`probe`]: a source's first page read without writing (`config check --live`);
//! - [`ldap`]: LDAP / Active Directory sources (connection, entries → records);
//! - [`hrfile`]: HR file drops (CSV / JSON Lines exports and their row counts);
//! - [`attributes`]: the attributes a SCIM or REST record keeps for correlation.
#![forbid(unsafe_code)]

pub mod actions;
pub mod attributes;
pub mod event;
pub mod hrfile;
pub mod http;
pub mod ldap;
pub mod metrics;
pub mod probe;
pub mod publisher;
pub mod ratelimit;
pub mod rest;
pub mod retry;
pub mod scim;
pub mod sync;

pub use publisher::{Publisher, PublisherConfig};
