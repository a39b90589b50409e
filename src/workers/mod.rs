//! The background roles of `govledger serve`: per-source workers that write to
//! the stream, and the clock. Each receives the resolved sources
//! ([`crate::config::sources::Source`]); none reads the config file or a secret.
//!
//! Layout:
//! - [`deps`]: what every worker shares (publisher, projection, shutdown);
//! - [`scheduler`]: the sync workers (scheduled and on-demand syncs, one at a time per source);
//! - [`action_intake`]: lifecycle-action submission (idempotent; used by the gRPC layer);
//! - [`action_worker`]: the per-source action executor workers and their crash recovery;
//! - [`deletions`]: accept-deletions, an operator's acceptance of a SUSPECT run's count drops;
//! - [`clock_alerts`]: the clock's decisions (OVERDUE actions, STALE sources) as alerts.

pub mod action_intake;
pub mod action_worker;
pub mod clock_alerts;
pub mod deletions;
pub mod deps;
pub mod scheduler;
