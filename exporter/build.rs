//! Embeds the eBPF object when `APISCOPE_EBPF_OBJECT` names it at build time (`make build`).
//! Without it the binary still builds (plain `cargo build` needs no eBPF toolchain) and takes
//! the object from `--ebpf-object` at run time.
//!
//! Embeds the live view's built UI (`ui/dist`, made by `make ui`) the same way: every file under
//! it, or, when it was not built, a page saying how to build it. npm is never needed to build
//! the binary.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    embed_ui();
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

fn embed_ui() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let ui = manifest_dir.join("../ui");
    let dist = ui.join("dist");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("ui_assets.rs");
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect_files(&dist, &dist, &mut files);
        println!("cargo::rerun-if-changed={}", dist.display());
    } else if ui.is_dir() {
        // Watching a path that does not exist would rerun this script on every build: watch
        // the UI's folder, whose change (a `make ui`) brings `dist` in.
        println!("cargo::rerun-if-changed={}", ui.display());
    }
    files.sort();
    let mut code = String::from("/// The built UI: (path under ui/dist, bytes).\n");
    if files.is_empty() {
        code.push_str(
            "pub static UI_BUILT: bool = false;\npub static UI_ASSETS: &[(&str, &[u8])] = &[];\n",
        );
    } else {
        code.push_str(
            "pub static UI_BUILT: bool = true;\npub static UI_ASSETS: &[(&str, &[u8])] = &[\n",
        );
        for (name, path) in &files {
            let _ = writeln!(
                code,
                "    ({name:?}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
        code.push_str("];\n");
    }
    std::fs::write(&out, code).expect("writing ui_assets.rs");
}

/// Every file under `dir`, as (path relative to `root` with `/`, absolute path). Symlinks are
/// not followed: the embedded set is exactly what the UI build wrote.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            collect_files(root, &path, files);
        } else if kind.is_file() {
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().unwrap_or(path);
            files.push((name, absolute));
        }
    }
}
