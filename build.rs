//! Builds the XDP program in `bpf/` and generates its Rust skeleton into `OUT_DIR`, where
//! `src/capture/xdp.rs` includes it. Building needs clang and the kernel/libbpf headers (see
//! `.ci/run`); nothing is generated into `src/`.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

const SRC: &str = "bpf/nameflow.bpf.c";
const HEADER: &str = "bpf/nameflow.h";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    // Debian keeps `asm/types.h` under the multiarch directory, which clang's BPF target does
    // not search by itself.
    let multiarch = match arch.as_str() {
        "aarch64" => "/usr/include/aarch64-linux-gnu",
        _ => "/usr/include/x86_64-linux-gnu",
    };
    if let Err(e) = SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            format!("-I{multiarch}"),
            "-Ibpf".to_string(),
            "-Wall".into(),
        ])
        .build_and_generate(out.join("nameflow.skel.rs"))
    {
        panic!(
            "building the XDP program {SRC} failed: {e:#}\n\
             install clang, llvm and libbpf-dev (`bash .ci/run` or `cargo xtask demo` does it)"
        );
    }
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={HEADER}");
}
