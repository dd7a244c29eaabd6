//! Generated protobuf and gRPC types for Herald (package `herald.v1`).
//!
//! Owns nothing but the code `build.rs` generates from `proto/herald/v1/`:
//! the public gRPC API (`EventService`, `EndpointService`) and the records
//! Herald stores in Kafka (`EventEnvelope`, `EndpointRecord`), and the
//! decoding of attempts-topic values ([`attempts`]).
#![forbid(unsafe_code)]

pub mod attempts;
pub mod codec;

/// Everything in the `herald.v1` protobuf package.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("herald.v1");
}

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald_descriptor");
