//! Code generated from proto/signer.proto (notary-signer's gRPC API).
#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("proto");
