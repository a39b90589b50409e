//! govledger: an event-sourced governance ledger for identity security.
//!
//! Layout (this package is the binary's library; the other crates do one job each):
//! - `govledger-proto` (`proto/`): the wire contract — events, projection records, gRPC API;
//! - `govledger-stream` (`stream/`): the stream contract, subjects, the NATS connection, backoff, failpoints;
//! - `govledger-ingest` (`ingest/`): the publisher, the connectors and sync engine, the action executor;
//! - `govledger-projector` (`projector/`): the pure fold, verdicts, the sled store, the consumer loop;
//! - here, by role:
//!   - [`cli`]: the command line (flags, one function per subcommand, human output);
//!   - [`config`]: one TOML file, typed and validated once (sources, secrets);
//!   - [`serve`]: wiring the roles, the embedded `nats-server` child, one shutdown path;
//!   - [`workers`]: the sync scheduler, the action workers, the clock's alerts;
//!   - [`cluster`]: several processes on one JetStream cluster: leases, triggers, read-your-writes;
//!   - [`api`]: the gRPC API: the tonic adapter and the queries it answers from;
//!   - [`auth`]: who may call what: principals, roles, the RPC → roles table, the guard;
//!   - [`alerts`]: decided alerts stored once in their own stream, the outbox relay, resumable watching;
//!   - [`ocsf`]: the OCSF feed: ledger events as OCSF 1.1 / 1.8 records for SIEMs;
//!   - [`observe`]: the metrics registry, the gRPC call counts;
//!   - [`http`]: the HTTP listener: `/metrics`, `/healthz`, `/readyz`, the status page;
//!   - [`audit`]: as-of answers, replay, proofs, checkpoints, verification, evidence;
//!   - [`simulate`]: synthetic runs for the demo, tests and benchmarks;
//!   - `fuzzing` (hidden): the fuzz targets' bodies, shared by `fuzz/` and `tests/fuzz_smoke.rs`.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod observe;
pub mod ocsf;
pub mod serve;
pub mod simulate;
pub mod workers;
