//! The errors of the eBPF room and the small helpers that make them:
//! [`ProbeError`] (what the loader, the walker and the feature checks
//! report), [`map_error`], [`program_mut`] and [`error_chain`]. They live
//! apart from the loader so its helpers (`walk_programs`, `walker`, `features`)
//! can use them without importing the loader, which imports them.

use aya::{Ebpf, EbpfError, maps::MapError, programs::ProgramError};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "c1m-daemon needs root, or the capabilities {missing}, to load eBPF programs; \
         run it with sudo (or grant them: see `c1m-daemon doctor`)"
    )]
    NoPrivilege { missing: String },
    #[error("cannot load c1m's eBPF programs into this kernel: {0}")]
    Load(#[source] EbpfError),
    #[error("c1m's eBPF object has no map {0}: the daemon and probes were built apart")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("walk {program} failed: {why}")]
    Walk { program: &'static str, why: String },
    #[error(
        "cannot observe TCP state changes on this kernel: {attempts}. c1m needs kernel \
         BTF (CONFIG_DEBUG_INFO_BTF) for tp_btf, or tracepoints with tracefs; \
         `c1m-daemon doctor` shows what this kernel allows"
    )]
    NoAttachPoint { attempts: String },
}

pub fn map_error(name: &'static str) -> impl FnOnce(MapError) -> ProbeError {
    move |source| ProbeError::Map { name, source }
}

/// A program of the object, as its concrete type.
pub fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from c1m's eBPF object"))?;
    program.try_into().map_err(error_chain)
}

/// A program error with its causes on one line (aya nests the errno).
pub fn error_chain(err: impl std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
