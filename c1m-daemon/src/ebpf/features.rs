//! What this kernel lets c1m do, found by trying: each program type is
//! loaded and attached for real (a do-nothing program from
//! `c1m-ebpf/src/probes/feature_checks.rs`), then detached at once.
//! Guessing from the kernel version is wrong too often: kprobes can be
//! compiled out, fentry can be refused by lockdown, and so on.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, CgroupAttachMode, FEntry, Iter, KProbe, RawTracePoint, SockOps, TracePoint,
    },
};
use serde::Serialize;

use super::{
    C1M_EBPF_OBJECT,
    error::{error_chain, program_mut},
    tracefs,
};

/// The outcome of trying one program type.
#[derive(Debug, Serialize)]
pub struct FeatureCheck {
    /// Short stable key for scripts, e.g. `tp_btf`, `iter_tcp`.
    #[serde(skip)]
    pub key: &'static str,
    /// Program type and hook, e.g. `tp_btf/inet_sock_set_state`.
    pub name: &'static str,
    /// What c1m uses it for.
    pub used_for: &'static str,
    pub usable: bool,
    /// The error when not usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Try every program type. Errors loading the object itself (no privilege)
/// mark every check unusable with that reason.
pub fn check_program_types() -> Vec<FeatureCheck> {
    type Check = fn(&mut Ebpf) -> Result<(), String>;
    #[rustfmt::skip]
    let checks: [(&str, &str, &str, Check); 8] = [
        ("tp_btf", "tp_btf/inet_sock_set_state", "TCP state changes (preferred)", check_tp_btf),
        ("tracepoint", "tracepoint/sock/inet_sock_set_state", "TCP state changes (fallback)", check_tracepoint),
        ("raw_tp", "raw_tp/inet_sock_set_state", "TCP state changes (alternative)", check_raw_tp),
        ("iter_tcp", "iter/tcp", "walking every TCP socket", |e| check_iter(e, "tcp")),
        ("iter_task_file", "iter/task_file", "walking a process's files", |e| check_iter(e, "task_file")),
        ("kprobe", "kprobe/tcp_close", "kernel function probes", check_kprobe),
        ("fentry", "fentry/tcp_close", "kernel function entry (BTF)", check_fentry),
        ("cgroup_sock_ops", "cgroup/sock_ops", "per-cgroup TCP callbacks", check_sock_ops),
    ];
    let mut ebpf = match EbpfLoader::new().load(C1M_EBPF_OBJECT) {
        Ok(ebpf) => ebpf,
        Err(err) => {
            let reason = error_chain(err);
            return checks
                .iter()
                .map(|(key, name, used_for, _)| FeatureCheck {
                    key,
                    name,
                    used_for,
                    usable: false,
                    error: Some(format!("loading c1m's eBPF object: {reason}")),
                })
                .collect();
        }
    };
    checks
        .iter()
        .map(|(key, name, used_for, check)| {
            let result = check(&mut ebpf);
            FeatureCheck {
                key,
                name,
                used_for,
                usable: result.is_ok(),
                error: result.err(),
            }
        })
        .collect()
}

fn kernel_btf() -> Result<Btf, String> {
    Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {}", error_chain(e)))
}

fn check_tp_btf(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = kernel_btf()?;
    let p: &mut BtfTracePoint = program_mut(ebpf, "check_tp_btf")?;
    p.load("inet_sock_set_state", &btf).map_err(error_chain)?;
    let link = p.attach().map_err(error_chain)?;
    p.detach(link).map_err(error_chain)
}

fn check_tracepoint(ebpf: &mut Ebpf) -> Result<(), String> {
    tracefs::ensure_tracefs().map_err(|e| format!("tracefs not mounted and cannot mount: {e}"))?;
    let p: &mut TracePoint = program_mut(ebpf, "check_tracepoint")?;
    p.load().map_err(error_chain)?;
    let link = p.attach("sock", "inet_sock_set_state");
    tracefs::unmount_if_ours();
    p.detach(link.map_err(error_chain)?).map_err(error_chain)
}

fn check_raw_tp(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut RawTracePoint = program_mut(ebpf, "check_raw_tp")?;
    p.load().map_err(error_chain)?;
    let link = p.attach("inet_sock_set_state").map_err(error_chain)?;
    p.detach(link).map_err(error_chain)
}

/// An iterator is usable when a read of it succeeds, not merely its attach.
fn check_iter(ebpf: &mut Ebpf, target: &str) -> Result<(), String> {
    let btf = kernel_btf()?;
    let p: &mut Iter = program_mut(ebpf, &format!("check_iter_{target}"))?;
    p.load(target, &btf).map_err(error_chain)?;
    let link_id = p.attach().map_err(error_chain)?;
    let link = p.take_link(link_id).map_err(error_chain)?;
    let mut file = link.into_file().map_err(error_chain)?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)
        .map_err(|e| format!("reading the iterator: {e}"))?;
    Ok(())
}

fn check_kprobe(ebpf: &mut Ebpf) -> Result<(), String> {
    let p: &mut KProbe = program_mut(ebpf, "check_kprobe")?;
    p.load().map_err(error_chain)?;
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Err("kernel built without CONFIG_KPROBES (no kprobe PMU)".into());
    }
    let link = p.attach("tcp_close", 0).map_err(error_chain)?;
    p.detach(link).map_err(error_chain)
}

fn check_fentry(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = kernel_btf()?;
    let p: &mut FEntry = program_mut(ebpf, "check_fentry")?;
    p.load("tcp_close", &btf).map_err(|e| {
        let text = error_chain(e);
        if text.contains("Operation not permitted") {
            format!("{text} (this kernel refuses fentry programs even to root)")
        } else {
            text
        }
    })?;
    let link = p.attach().map_err(error_chain)?;
    p.detach(link).map_err(error_chain)
}

/// Attached to a fresh empty cgroup made for the check, never to a cgroup
/// with processes in it, then the cgroup is removed.
fn check_sock_ops(ebpf: &mut Ebpf) -> Result<(), String> {
    let root = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted")?;
    let dir = root.join(format!("c1m-doctor-{}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let result = (|| {
        let cgroup = fs::File::open(&dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
        let p: &mut SockOps = program_mut(ebpf, "check_sock_ops")?;
        p.load().map_err(error_chain)?;
        let link = p
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(error_chain)?;
        p.detach(link).map_err(error_chain)
    })();
    let _ = fs::remove_dir(&dir);
    result
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on most systems; here
/// `/sys/fs/cgroup/unified` beside v1).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, path, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(path))
    })
}
