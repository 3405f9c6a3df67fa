use which::which;

/// The kernel crate links with `bpf-linker`; rebuild when that binary changes.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask build`"),
    }
}
