//! Compiles `proto/neo/gateway/v1/gateway.proto` (client and server) in pure Rust, reusing the
//! `neo.v1` types of `neo-protocol`, and saves the descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = // Read at run time: a build script compiled in another checkout sharing the target
    // directory must not point at that checkout.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["neo/gateway/v1/gateway.proto"])?;
    let descriptors = compiler.file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("gateway_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .extern_path(".neo.v1", "::neo_protocol::pb")
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
