//! The govledger wire contract: the protobuf events, the projection records and
//! the gRPC API of package `govledger.v1`, generated at build time by prost/tonic
//! from `proto/govledger/v1/*.proto` (no system `protoc` needed).
//!
//! Layout:
//! - `v1`: the generated messages, enums and the `Ledger` client and server;
//! - [`codec`]: the service's codec: tonic's prost codec with undecodable
//!   requests answered INVALID_ARGUMENT instead of INTERNAL.
#![forbid(unsafe_code)]

pub mod codec;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("govledger.v1");
}

/// Encoded `FileDescriptorSet` of every govledger proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/govledger_descriptor.bin"));

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;
