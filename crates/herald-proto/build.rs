//! Generates Rust types from `proto/herald/v1/*.proto` with a vendored `protoc`,
//! so building Herald never needs a system protoc.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc); // read by tonic-prost-build

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "envelope.proto",
        "events.proto",
        "endpoints.proto",
        "deadletters.proto",
        "cluster.proto",
        "event_types.proto",
    ]
    .map(|f| root.join("herald/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".herald.v1.EventEnvelope.payload")
        .bytes(".herald.v1.AttemptRecord.response_body")
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out.join("herald_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}
