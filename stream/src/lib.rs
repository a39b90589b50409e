//! The shared ground of ingest and projector: what both sides of the stream agree on.
//!
//! Layout:
//! - [`contract`]: the JetStream stream contract (immutable, discard-new, no max age),
//!   [`ensure_stream`] and the check that refuses a weaker existing stream;
//! - [`subject`]: source-id validation and the subject each event is published on;
//! - [`connect`]: the bounded NATS connection (client name, timeout, credentials, TLS);
//! - [`redact`]: [`redact_url`], the one way a URL that may carry userinfo is printed;
//! - [`scrub`]: [`Scrubber`], the one scrubber of secrets in texts a connector stores;
//! - [`secret`]: [`Secret`], a value whose `Debug` and `Display` print `***`;
//! - [`backoff`]: the one jittered exponential backoff every retry loop uses;
//! - [`failpoint`]: crash-test hooks that abort the process at a named point;
//! - [`seal`]: producer seals (provenance): signing keys, the trusted set, run chains;
//! - [`room`]: free space on a store's disk, checked before writing.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod connect;
pub mod contract;
pub mod failpoint;
pub mod redact;
pub mod room;
pub mod scrub;
pub mod seal;
pub mod secret;
pub mod subject;

pub use contract::{StreamSpec, ensure_stream};
pub use redact::redact_url;
pub use scrub::Scrubber;
pub use secret::Secret;
