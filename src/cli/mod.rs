//! The command line's library half: what the `govledger` binary prints.
//!
//! Layout:
//! - [`output`]: human-readable output of the client commands (pure formatting).

pub mod output;
