//! The fold: events in stream order → projection records. Pure and deterministic.
//!
//! Architecture Invariant: the fold does no I/O and reads no clock. Its inputs are
//! the stream sequence, the stream's own timestamp and the message bytes; its
//! state is a [`Working`] set that the caller preloaded with every key
//! [`needs`] names (missing = absent). Folding the same messages into the same
//! state always gives the same records, byte for byte.
//!
//! Idempotence: a sequence at or below `last_applied_seq` is ignored, and an
//! event id that was already applied is counted as a duplicate and changes
//! nothing else. Undecodable or unusable messages become [`PoisonEvent`](govledger_proto::v1::PoisonEvent)s.
//!
//! Layout (private modules; their public items are re-exported here):
//! - `working`: [`Working`], the state a batch reads and writes, and its [`Table`]s;
//! - `needs`: [`decode`] and the keys a batch must load first ([`needs`],
//!   [`needs_after_load`], [`needs_seq`]);
//! - `apply`: [`apply`], one message: leaf, poison, duplicate, body dispatch;
//! - `read`: the sync events, one function per body, and the run's decision;
//! - `write`: the action events, one function per body, and drift;
//! - `accept`: accept-deletions, an operator's acceptance of a run's count drops;
//! - `records`: the source, run, action and identity records an event touches.

mod accept;
mod apply;
mod needs;
mod read;
mod records;
mod working;
mod write;

pub use apply::{Applied, StreamMsg, apply, hex, is_read_path};
pub use needs::{LastPushed, decode, needs, needs_after_load, needs_seq};
pub use read::FAILED_PAGES_KEPT_MAX;
pub use records::HISTORY_INLINE_MAX;
pub use working::{IdentityPageWrites, IdentityPages, KeyValue, PresentError, Table, Working};
pub use write::WATCHED_PER_IDENTITY_MAX;
