//! govledger: an event-sourced governance ledger for identity security.
//!
//! Layout (this package is the binary's library; the other crates do one job each):
//! - `govledger-proto` (`proto/`): the wire contract — events, projection records, gRPC API;
//! - `govledger-stream` (`stream/`): the stream contract, subjects, the NATS connection, backoff, failpoints;
//! - `govledger-ingest` (`ingest/`): the publisher, the connectors and sync engine, the action executor;
//! - `govledger-projector` (`projector/`): the pure fold, verdicts, the sled store, the consumer loop;
//! - here: [`config`] (one TOML file), [`serve`] (wiring the roles, one shutdown path),
//!   [`api`] (the gRPC API: the tonic adapter and the queries it answers from),
//!   [`audit`] (as-of answers, replay, proofs, checkpoints, verification, evidence),
//!   [`nats_embed`] (the embedded `nats-server` child),
//!   [`simulate`] (synthetic runs for the demo and tests), [`cli`] (human output).
#![forbid(unsafe_code)]

pub mod actions;
pub mod api;
pub mod audit;
pub mod cli;
pub mod clock_alerts;
pub mod config;
pub mod nats_embed;
pub mod serve;
pub mod simulate;
pub mod sources;
pub mod syncer;
