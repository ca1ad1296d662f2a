//! Generates the contract from `proto/` with a vendored `protoc`, so no system protoc is needed:
//! prost messages, tonic server and client stubs (each compiled only behind its crate feature),
//! a file descriptor set for gRPC reflection, and proto3 JSON (serde) impls via pbjson.

use std::{env, path::PathBuf};

const PROTO: &str = "proto/autopilot/v1/autopilot.proto";
const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("autopilot_descriptor.bin");

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        // Well-known types come from pbjson-types so that they, too, have proto3 JSON mapping.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .server_mod_attribute("autopilot.v1", r#"#[cfg(feature = "server")]"#)
        .client_mod_attribute("autopilot.v1", r#"#[cfg(feature = "client")]"#)
        .compile_protos(&[PROTO], &[PROTO_ROOT])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.build(&[".autopilot.v1"])?;
    Ok(())
}
