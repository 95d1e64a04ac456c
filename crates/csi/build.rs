//! Compiles the CSI spec's `csi.proto` (interface definition from
//! github.com/container-storage-interface/spec) and the kubelet's plugin registration API
//! into tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .generate_default_stubs(true)
        .compile_protos(
            &["proto/csi.proto", "proto/pluginregistration.proto"],
            &["proto/"],
        )?;
    Ok(())
}
