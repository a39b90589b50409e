//! The audit room: everything that reads the stream itself (the source of
//! truth) to answer for the past or to prove the ledger has not changed.
//!
//! Layout:
//! - [`asof`]: point-in-time answers (an identity, an action, a source as it
//!   stood at a past sequence or time), folded again from the stream;
//! - [`source_snapshots`]: earlier source answers kept, checked, and folded on from;
//! - [`replay`]: the events of the stream in order, filtered, with leaf hashes;
//! - [`verify`]: a range of the stream checked against the recorded leaves and
//!   the signed checkpoint roots;
//! - [`checkpoints`]: signed, chained checkpoints of the Merkle root;
//! - [`keys`]: the manifest key bundles are signed with, endorsed by the checkpoint key;
//! - [`note`]: the same checkpoints as C2SP signed notes, and witness cosignatures;
//! - [`witness`]: cosigned checkpoints handed in, checked, and who witnessed what;
//! - [`witness_client`]: asking witnesses for cosignatures (tlog-witness `add-checkpoint`);
//! - [`evidence`]: evidence bundles — their export and their offline check;
//! - [`report`]: the auditor's completeness report, rendered from a verified bundle.
//!
//! Nothing here knows the gRPC layer: each module returns its own error enum,
//! and `crate::api` maps those to status codes.

pub mod asof;
pub mod checkpoints;
pub mod evidence;
pub mod keys;
pub mod note;
pub mod replay;
pub mod report;
pub mod source_snapshots;
pub mod verify;
pub mod witness;
pub mod witness_client;
