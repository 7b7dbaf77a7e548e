//! Link flags for the binaries.
//!
//! `signoff exec` is on the path of every gated command, so its start-up is
//! part of the overhead a user sees. Most of a Rust PIE's start-up is the
//! dynamic loader applying ~40k relative relocations from a ~1 MB
//! `.rela.dyn`; packed relative relocations (DT_RELR, glibc ≥ 2.36,
//! binutils ≥ 2.38) shrink that table to a few KiB.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") && linker_supports_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the system linker accepts `-z pack-relative-relocs` and the C
/// library runs what it links (older binutils or glibc: the binary is
/// linked as before).
fn linker_supports_relr() -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let src = std::path::Path::new(&dir).join("relr_probe.c");
    let out = std::path::Path::new(&dir).join("relr_probe");
    if std::fs::write(&src, "int main(void){return 0;}\n").is_err() {
        return false;
    }
    let linked = std::process::Command::new(cc)
        .arg("-Wl,-z,pack-relative-relocs")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success());
    linked
        && std::process::Command::new(&out)
            .output()
            .is_ok_and(|o| o.status.success())
}
