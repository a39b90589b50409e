//! govledger: an event-sourced governance ledger for identity security.
//!
//! Layout (this package is the binary's library; the other crates do one job each):
//! - `govledger-proto` (`proto/`): the wire contract — events, projection records, gRPC API;
//! - `govledger-ingest` (`ingest/`): the stream contract, the publisher, the retry engine;
//! - `govledger-projector` (`projector/`): the pure fold, verdicts, the sled store, the consumer loop;
//! - here, by role:
//!   - [`cli`]: the command line (flags, one function per subcommand, human output);
//!   - [`config`]: one TOML file, typed and validated once (sources, secrets);
//!   - [`serve`]: wiring the roles, the embedded `nats-server` child, one shutdown path;
//!   - [`workers`]: the sync scheduler, the action workers, the clock's alerts;
//!   - [`api`]: the tonic service;
//!   - [`asof`], [`replay`], [`verify`], [`checkpoints`], [`evidence`]: the audit reads;
//!   - [`simulate`]: synthetic runs for the demo, tests and benchmarks.
#![forbid(unsafe_code)]

pub mod api;
pub mod asof;
pub mod checkpoints;
pub mod cli;
pub mod config;
pub mod evidence;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod verify;
pub mod workers;
