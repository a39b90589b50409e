//! The background roles of `govledger serve`, one task per source each.
//!
//! Layout:
//! - [`scheduler`]: the sync workers (scheduled and on-demand syncs, one at a time per source);
//! - [`actions`]: lifecycle-action submission and the per-source executor workers;
//! - [`clock_alerts`]: the clock's decisions (OVERDUE actions, STALE sources) as alerts.

pub mod actions;
pub mod clock_alerts;
pub mod scheduler;
