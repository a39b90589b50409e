//! The gRPC API (package `govledger.v1`): answers from the sled projections.
//!
//! Layout:
//! - [`service`]: the tonic adapter (`impl Ledger for LedgerApi`).

pub mod service;

pub use service::*;
