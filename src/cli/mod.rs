//! The command line: flags, one function per subcommand, human output. The
//! `govledger` binary parses [`args::Cli`] and calls the function of its
//! subcommand; each returns `anyhow::Result` (this is the binary's edge) and a
//! [`client::NotOk`] error for a negative answer (exit code 3).
//!
//! Layout:
//! - [`args`]: the clap types (subcommands, shared flags, typed values);
//! - [`client`]: the gRPC connection, error text, `NotOk`, flag parsing;
//! - [`server`]: `serve`, `project`, `simulate`, `rebuild`, `projector pause|resume` (and config loading);
//! - [`status`]: `status`, `sync`, `readiness`, `runs`, `run`, `identity`, `source`;
//! - [`actions`]: `act`, `actions`, `action`;
//! - [`deletions`]: the `accept-deletions` command;
//! - [`audit`]: `ledger`, `poison`, `replay`, `verify`, `export`, `verify-bundle`;
//! - [`report`]: `report` (the auditor's completeness report, HTML);
//! - [`credentials`]: `credentials siem` (the embedded NATS's read-only user);
//! - [`token`]: `token new` (an API bearer token and its config entry);
//! - [`output`]: human-readable output (pure formatting);
//! - [`emit`]: printing an answer: `--json`, or the table, coloured on a terminal.

pub mod actions;
pub mod args;
pub mod audit;
pub mod client;
pub mod credentials;
pub mod deletions;
pub mod emit;
pub mod output;
pub mod report;
pub mod server;
pub mod status;
pub mod token;
