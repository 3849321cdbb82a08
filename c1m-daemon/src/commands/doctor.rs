//! `c1m-daemon doctor`: what this kernel and this process allow, and
//! whether c1m can run here at all.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use crate::{
    cli::DoctorArgs,
    ebpf::{
        VMLINUX_BTF,
        features::{FeatureCheck, check_program_types},
    },
    exit::Exit,
    system::{
        limits::{Reading, SystemLimits, read_system_limits},
        privileges::Privileges,
    },
};

#[derive(Serialize)]
struct Kernel {
    release: String,
    btf: bool,
}

#[derive(Serialize)]
struct DoctorReport {
    kernel: Kernel,
    privileges: Privileges,
    program_types: BTreeMap<&'static str, FeatureCheck>,
    limits: SystemLimits,
    can_run: bool,
    /// Why c1m cannot run, each with what to do. Empty when it can.
    problems: Vec<String>,
}

pub fn doctor(args: &DoctorArgs) -> anyhow::Result<Exit> {
    let privileges = Privileges::of_this_process();
    let program_types: BTreeMap<_, _> = check_program_types()
        .into_iter()
        .map(|check| (check.key, check))
        .collect();
    let usable = |key: &str| program_types.get(key).is_some_and(|c| c.usable);

    let mut problems = Vec::new();
    if !privileges.can_trace() {
        problems.push(format!(
            "this process lacks {}: run c1m-daemon as root (sudo) or grant CAP_BPF and \
             CAP_PERFMON (plus CAP_SYS_PTRACE to watch other users' processes)",
            privileges.missing_for_tracing().join(" and ")
        ));
    } else if !usable("tp_btf") && !usable("tracepoint") {
        problems.push(
            "neither tp_btf nor the classic tracepoint for inet_sock_set_state attaches: \
             c1m needs Linux >= 4.16 with tracepoints, or >= 5.5 with BTF \
             (CONFIG_DEBUG_INFO_BTF=y)"
                .to_owned(),
        );
    }
    let report = DoctorReport {
        kernel: Kernel {
            release: kernel_release(),
            btf: Path::new(VMLINUX_BTF).exists(),
        },
        privileges,
        program_types,
        limits: read_system_limits(),
        can_run: problems.is_empty(),
        problems,
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.can_run {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn show<T: std::fmt::Debug>(reading: &Reading<T>) -> String {
    match reading {
        Reading::Value(v) => format!("{v:?}").replace(['[', ']', ','], ""),
        Reading::Unavailable { unavailable } => format!("unavailable: {unavailable}"),
    }
}

fn print_table(r: &DoctorReport) {
    let p = &r.privileges;
    println!("c1m doctor: what this kernel and this process allow\n");
    println!(
        "kernel      {} (BTF at {VMLINUX_BTF}: {})",
        r.kernel.release,
        yes_no(r.kernel.btf)
    );
    println!(
        "privileges  uid {}; CAP_SYS_ADMIN {}, CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_PTRACE {}, \
         CAP_SYS_RESOURCE {}",
        p.euid,
        yes_no(p.cap_sys_admin),
        yes_no(p.cap_bpf),
        yes_no(p.cap_perfmon),
        yes_no(p.cap_sys_ptrace),
        yes_no(p.cap_sys_resource),
    );
    println!("\neBPF program types (each loaded and attached for real)");
    for check in r.program_types.values() {
        println!(
            "  {:<4} {:<38} {}{}",
            yes_no(check.usable),
            check.name,
            check.used_for,
            check
                .error
                .as_ref()
                .map(|e| format!(" [{e}]"))
                .unwrap_or_default()
        );
    }
    let l = &r.limits;
    println!("\nlimits on connections");
    let rows = [
        (
            "RLIMIT_NOFILE (soft hard)",
            format!("{} {}", l.rlimit_nofile.soft, l.rlimit_nofile.hard),
        ),
        ("fs.nr_open", show(&l.nr_open)),
        ("fs.file-max", show(&l.file_max)),
        ("net.ipv4.ip_local_port_range", show(&l.ip_local_port_range)),
        ("net.ipv4.tcp_max_tw_buckets", show(&l.tcp_max_tw_buckets)),
        ("net.ipv4.tcp_mem (pages)", show(&l.tcp_mem_pages)),
        ("net.core.somaxconn", show(&l.somaxconn)),
        ("net.netfilter.nf_conntrack_max", show(&l.nf_conntrack_max)),
    ];
    for (name, value) in rows {
        println!("  {name:<32} {value}");
    }
    println!();
    if r.can_run {
        println!("c1m can run here.");
    } else {
        for problem in &r.problems {
            println!("c1m cannot run here: {problem}");
        }
    }
}
