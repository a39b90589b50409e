//! Compiles `govledger/v1/*.proto` with protox (pure Rust, no system `protoc`)
//! and writes a file descriptor set for gRPC server reflection.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "govledger/v1/events.proto",
    "govledger/v1/state.proto",
    "govledger/v1/api.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("govledger_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A request that does not decode is the client's fault: INVALID_ARGUMENT.
        .codec_path("crate::codec::LedgerCodec")
        .compile_fds(fds)?;
    Ok(())
}
