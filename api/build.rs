//! Compiles the Open Inference Protocol's `.proto` with protox, a protobuf
//! compiler in Rust, so building switchyard never needs `protoc` installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        let proto = "proto/grpc_predict_v2.proto";
        println!("cargo:rerun-if-changed={proto}");
        let descriptors = protox::compile([proto], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .codec_path("crate::grpc_codec::GuardedCodec")
            .compile_fds(descriptors)?;
    }
    Ok(())
}
