//! Embeds the eBPF object when `APISCOPE_EBPF_OBJECT` names it at build time (`make build`).
//! Without it the binary still builds (plain `cargo build` needs no eBPF toolchain) and takes
//! the object from `--ebpf-object` at run time.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(apiscope_embedded_ebpf)");
    println!("cargo::rerun-if-env-changed=APISCOPE_EBPF_OBJECT");
    if let Ok(path) = std::env::var("APISCOPE_EBPF_OBJECT") {
        if std::path::Path::new(&path).is_file() {
            println!("cargo::rerun-if-changed={path}");
            println!("cargo::rustc-cfg=apiscope_embedded_ebpf");
            println!("cargo::rustc-env=APISCOPE_EMBEDDED_EBPF_OBJECT={path}");
        } else {
            println!(
                "cargo::warning=APISCOPE_EBPF_OBJECT={path} is not a file; building without embedded eBPF programs"
            );
        }
    }
}
