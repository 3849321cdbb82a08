//! `cargo xtask fuzz`: run the fuzz targets of `fuzz/` with cargo-fuzz.
//!
//! cargo-fuzz wants nightly rustc for its `-Z` flags; stable accepts them
//! with RUSTC_BOOTSTRAP=1, which spares a fresh machine a nightly download.
//! No sanitizer (`--sanitizer none`): the code is safe Rust, and a panic is
//! the failure looked for. Optimised (`-O`) but with overflow checks and
//! debug assertions (`-a`), as in a debug build: an arithmetic overflow that
//! only wraps in the release binary is still a bug.

use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    /// Every /proc, /sys and cgroup text parser.
    KernelText,
    /// Durations, rates, sizes, source IP ranges.
    CliValues,
}

impl Target {
    const ALL: [Target; 2] = [Target::KernelText, Target::CliValues];

    fn name(self) -> &'static str {
        match self {
            Target::KernelText => "kernel_text",
            Target::CliValues => "cli_values",
        }
    }

    /// Longest input tried: kernel files are a few KiB, values a few bytes.
    fn max_len(self) -> u32 {
        match self {
            Target::KernelText => 8192,
            Target::CliValues => 256,
        }
    }
}

pub fn run(targets: &[Target], seconds: u64) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let targets = if targets.is_empty() {
        &Target::ALL[..]
    } else {
        targets
    };
    for target in targets {
        let name = target.name();
        // New inputs go to a corpus under target/ (kept between runs, not
        // committed); the committed seeds are real kernel files and values.
        let corpus = root.join("target/fuzz-corpus").join(name);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        eprintln!("fuzz: {name} for {seconds} s");
        let status = Command::new("cargo")
            .args(["fuzz", "run", "--sanitizer", "none", "-O", "-a", name])
            .arg(&corpus)
            .arg(fuzz_dir.join("seeds").join(name))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={}", target.max_len()))
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .status()
            .context("running cargo fuzz (`cargo xtask setup` installs it)")?;
        if !status.success() {
            bail!(
                "fuzz target {name} failed ({status}): the input that broke it is in \
                 fuzz/artifacts/{name}/; reproduce with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz \
                 run --sanitizer none -O -a {name} <that file>`"
            );
        }
    }
    Ok(())
}
