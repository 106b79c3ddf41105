//! Compiles `proto/neo/v1/*.proto` in pure Rust (protox), so no `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = // Read at run time: a build script compiled in another checkout sharing the target
    // directory must not point at that checkout.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [
        "neo/v1/envelope.proto",
        "neo/v1/tenant.proto",
        "neo/v1/app.proto",
        "neo/v1/build.proto",
        "neo/v1/deployment.proto",
        "neo/v1/podgroup.proto",
        "neo/v1/runtime.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    prost_build::Config::new()
        .btree_map(["."])
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
