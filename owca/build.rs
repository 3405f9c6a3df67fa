use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds the kernel crate `owca-ebpf` with the nightly toolchain and bpf-linker, and
/// leaves the object in `OUT_DIR` for `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
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
