// `sqlx::migrate!` embeds migrations/ at compile time; without this, adding a
// migration file would not trigger a rebuild.
//
// proto/signer.proto (notary-signer's gRPC API) is compiled with protox, a
// protobuf compiler written in Rust, so building needs no protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["signer.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
