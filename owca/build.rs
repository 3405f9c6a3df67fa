use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds the kernel crate `owca-ebpf` with the nightly toolchain and bpf-linker, and
/// leaves the object in `OUT_DIR` for `include_bytes_aligned!`. Without the `ebpf` feature
/// the object is an empty file (see `collector::EBPF_OBJECT`).
fn main() -> anyhow::Result<()> {
    if std::env::var_os("CARGO_FEATURE_EBPF").is_none() {
        let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR is not set"))?;
        let object = std::path::Path::new(&out_dir).join("owca");
        println!("cargo::rerun-if-changed=build.rs");
        return std::fs::write(&object, b"")
            .with_context(|| format!("writing the empty eBPF object {}", object.display()));
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("running cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "owca-ebpf")
        .ok_or_else(|| anyhow!("package owca-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("owca-ebpf manifest has no parent directory"))?
        .as_str();
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
