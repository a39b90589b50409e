//! The gRPC API (package `govledger.v1`): answers from the sled projections
//! and, for the past and for proofs, from the stream.
//!
//! API Boundary: every request is validated before anything is read; errors
//! use the status code a client can act on and a message saying what to do.
//!
//! Layout:
//! - [`service`]: the tonic adapter (`impl Ledger for LedgerApi`): validate,
//!   call one query, map the result;
//! - [`validate`]: the one way requests are checked (required fields, page
//!   limits, enum numbers, as-of points, ranges);
//! - [`status`]: the one map from each domain error to a `tonic::Status`;
//! - [`queries`]: the answers themselves (source status and readiness, runs,
//!   identities, action views, ledger status), free of gRPC types;
//! - [`proofs`]: the audit answers (proofs, checkpoints, cosignatures, VerifyRange);
//! - [`readiness`]: the pure rules of why a scope of sources is not ready;
//! - [`blockers`]: the actions that block readiness, read through the
//!   blocking-action index;
//! - [`leavers`]: the leaver check across sources (`[leavers]`), pure rules and the scans;
//! - [`stream_state`]: the stream's position for GetLedgerStatus, one NATS
//!   reading at a time, shared by the callers it is fresh enough for.

pub mod blockers;
pub mod leavers;
pub mod proofs;
pub mod queries;
pub mod readiness;
pub mod service;
pub mod status;
pub mod stream_state;
pub mod validate;

pub use queries::READINESS_ACTIONS_MAX;
pub use readiness::readiness_blockers;
pub use service::{
    ApiParts, LIST_POISON_DEFAULT, LIST_POISON_MAX, LIST_RUNS_DEFAULT, LIST_RUNS_MAX, LedgerApi,
};
