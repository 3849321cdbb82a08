//! Builds the kernel programs (`c1m-ebpf`) for the bpf target and leaves the
//! object in `OUT_DIR/c1m`, which `src/ebpf/mod.rs` embeds
//! (`C1M_EBPF_OBJECT`).
//!
//! Two toolchain routes exist and this script picks the one the machine has:
//! - rustup nightly with `rust-src` (the usual aya route: `-Z build-std=core`);
//! - Debian's `rustc-web` with the prebuilt bpf `core` from
//!   `libstd-rust-web-dev-bpf`, linked into rustup as `debian-bpf`.
//!
//! With neither, the build stops and says what to install: `cargo xtask
//! setup` does it on Debian/Ubuntu.

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

/// rustup name under which Debian's rustc is linked (`cargo xtask setup`).
const DEBIAN_TOOLCHAIN: &str = "debian-bpf";
/// Crates allowed unstable features on the stable Debian rustc: aya-ebpf
/// (`asm_experimental_arch`) and our probes binary, whose crate is `c1m`.
/// Naming crates rather than `1` also keeps aya-build from adding
/// `-Z build-std`, which needs `rust-src`.
const BOOTSTRAP_CRATES: &str = "aya_ebpf,c1m";

enum Route {
    Nightly,
    Debian,
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=C1M_EBPF_TOOLCHAIN");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../c1m-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path to c1m-ebpf")?;

    let route = detect_route()?;
    if !on_path("bpf-linker") {
        bail!(
            "bpf-linker is not on PATH; c1m's kernel programs need it to link.\n\
             Run `cargo xtask setup` (Debian/Ubuntu), or install it yourself:\n  \
             cargo install bpf-linker   # see README, 'Building'"
        );
    }
    let toolchain = match route {
        Route::Nightly => Toolchain::Nightly,
        Route::Debian => {
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { env::set_var("RUSTC_BOOTSTRAP", BOOTSTRAP_CRATES) };
            Toolchain::Custom(DEBIAN_TOOLCHAIN)
        }
    };
    // aya-build relays the inner cargo's stderr as `cargo:warning` lines;
    // without this a cold build prints one warning per compiled crate.
    // Errors still come through.
    // SAFETY: as above.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    let package = Package {
        name: "c1m-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], toolchain).context("building c1m-ebpf for the bpf target")
}

/// Pick the eBPF toolchain route. `C1M_EBPF_TOOLCHAIN=nightly|debian`
/// overrides the detection.
fn detect_route() -> anyhow::Result<Route> {
    match env::var("C1M_EBPF_TOOLCHAIN").as_deref() {
        Ok("nightly") => return Ok(Route::Nightly),
        Ok("debian") => return Ok(Route::Debian),
        Ok(other) => bail!("C1M_EBPF_TOOLCHAIN={other}: expected `nightly` or `debian`"),
        Err(_) => {}
    }
    if sysroot_of(DEBIAN_TOOLCHAIN)
        .is_some_and(|s| s.join("lib/rustlib/bpfel-unknown-none/lib").is_dir())
    {
        return Ok(Route::Debian);
    }
    if sysroot_of("nightly").is_some_and(|s| s.join("lib/rustlib/src/rust/library").is_dir()) {
        return Ok(Route::Nightly);
    }
    bail!(
        "no toolchain can build c1m's eBPF programs on this machine.\n\
         c1m needs one of:\n  \
         - Debian/Ubuntu: `cargo xtask setup` (installs rustc-web, libstd-rust-web-dev-bpf, \
         llvm-22-dev and bpf-linker, and links the toolchain as `{DEBIAN_TOOLCHAIN}`)\n  \
         - elsewhere: `rustup toolchain install nightly --component rust-src` and \
         `cargo install bpf-linker`"
    )
}

fn sysroot_of(toolchain: &str) -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
