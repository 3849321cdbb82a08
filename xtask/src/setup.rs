//! Idempotent set-up of what building and testing c1m needs. Each step
//! checks first and says what it does; when it cannot act (not root, not
//! Debian/Ubuntu) it stops with the exact command to run.
//!
//! Two eBPF toolchain routes (see `c1m-daemon/build.rs`): rustup nightly
//! with `rust-src`, or Debian's `rustc-web` with its prebuilt bpf `core`.
//! Set-up prefers whatever is already there and installs the Debian route
//! otherwise.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Debian packages for the Debian eBPF route, and tools the tests use.
const BUILD_PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];
/// util-linux: setpriv/prlimit/unshare; iproute2: network namespaces;
/// bpftool: checking nothing outlives the daemon; g++: libFuzzer (built by
/// the fuzz targets); chromium: the dashboard's browser test (with Node.js,
/// see `ensure_npm_packages`). The real servers whose own connection caps
/// c1m reads (tests start them from temporary configs, never as services),
/// and python3 for the small servers c1m knows nothing about.
const TEST_PACKAGES: &[&str] = &[
    "util-linux",
    "iproute2",
    "bpftool",
    "g++",
    "chromium",
    "nginx-light",
    "redis-server",
    "haproxy",
    "memcached",
    "postgresql",
    "python3",
    // prometheus + promtool: tests/prometheus_deploy.rs checks deploy/prometheus/
    // and scrapes a real daemon with the deployed config.
    "prometheus",
    // tests/load_shards.rs lints deploy/ssh/load-fanout.sh.
    "shellcheck",
];
const DEBIAN_TOOLCHAIN: &str = "debian-bpf";
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn ensure_build_prerequisites() -> anyhow::Result<()> {
    if !nightly_has_rust_src() {
        ensure_apt_packages(BUILD_PACKAGES)?;
        ensure_debian_toolchain_link()?;
    }
    ensure_bpf_linker()
}

pub fn ensure_test_prerequisites() -> anyhow::Result<()> {
    ensure_apt_packages(TEST_PACKAGES)?;
    ensure_cargo_fuzz()?;
    ensure_npm_packages()
}

/// cargo-fuzz for the parser fuzzing (`cargo xtask fuzz`).
pub fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("setup: cargo install cargo-fuzz {CARGO_FUZZ_VERSION} (about 30 s)");
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// playwright-core for the browser test, pinned by web/tests/package-lock.json.
fn ensure_npm_packages() -> anyhow::Result<()> {
    // Node.js may come from elsewhere than Debian (with its own npm): only
    // when there is no npm at all are Debian's packages installed.
    let has_npm = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_npm {
        ensure_apt_packages(&["nodejs", "npm"])?;
    }
    let dir = crate::workspace_root().join("web/tests");
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Ok(());
    }
    eprintln!("setup: npm ci in web/tests (playwright-core for the browser test)");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir))
}

fn nightly_has_rust_src() -> bool {
    rustup_sysroot("nightly").is_some_and(|s| s.join("lib/rustlib/src/rust/library").is_dir())
}

fn rustup_sysroot(toolchain: &str) -> Option<std::path::PathBuf> {
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().into())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn ensure_apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    if !Path::new("/usr/bin/apt-get").exists() {
        eprintln!(
            "setup: not a Debian/Ubuntu system; make sure these (or your distribution's \
             equivalents) are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        bail!("missing packages; run: sudo apt-get update && sudo {install}");
    }
    eprintln!("setup: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_debian_toolchain_link() -> anyhow::Result<()> {
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("running rustup (c1m builds with rustup's cargo)")?;
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.starts_with(DEBIAN_TOOLCHAIN))
    {
        return Ok(());
    }
    eprintln!(
        "setup: rustup toolchain link {DEBIAN_TOOLCHAIN} /usr (Debian's rustc builds the probes)"
    );
    run(Command::new("rustup").args(["toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"]))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let installed = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    // bpf-linker must link against the same LLVM major as the rustc that
    // emits the bitcode: LLVM 22 for Debian's rustc-web. Its build script
    // finds LLVM through llvm-config on PATH.
    let llvm_bin = "/usr/lib/llvm-22/bin";
    let mut cargo = Command::new("cargo");
    cargo.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION]);
    if Path::new(llvm_bin).is_dir() {
        let path = std::env::var("PATH").unwrap_or_default();
        cargo
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", format!("{llvm_bin}:{path}"));
    }
    eprintln!("setup: cargo install bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    run(&mut cargo)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
