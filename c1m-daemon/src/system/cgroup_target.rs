//! A cgroup as the target: `--cgroup PATH` or `--container NAME|ID`. Every
//! process in the cgroup (or below it) is the target, including processes
//! started or moved there later: the kernel programs match the cgroup id,
//! so nothing here polls for pids. Only cgroup v2 has ids the kernel
//! programs can match; on hybrid hosts it is mounted beside v1 (e.g.
//! `/sys/fs/cgroup/unified`) and is found in `/proc/self/mountinfo`.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The target cgroup: its directory, its id (the directory's inode number,
/// what the kernel's cgroup id helpers return) and its depth below the v2
/// root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSpec {
    pub path: PathBuf,
    /// The path as the kernel shows it in `/proc/<pid>/cgroup` (`/a/b`).
    pub name: String,
    pub id: u64,
    pub level: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupTargetError {
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for a cgroup2 line in /proc/self/mountinfo); \
         mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or target the server by --pid"
    )]
    NoV2,
    #[error(
        "{path} is not a cgroup v2 directory (no cgroup.procs in it); give a directory under \
         {root} or a path relative to it, e.g. /system.slice/nginx.service"
    )]
    NotACgroup { path: PathBuf, root: PathBuf },
    #[error("{0}")]
    Container(String),
}

/// The cgroup v2 mount point, from mountinfo text: the first `cgroup2`.
pub fn parse_v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

pub fn v2_root() -> Result<PathBuf, CgroupTargetError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_v2_mount(&text).ok_or(CgroupTargetError::NoV2)
}

/// `--cgroup PATH`: a directory of the v2 mount, or a path relative to its
/// root as `/proc/<pid>/cgroup` shows it.
pub fn resolve_cgroup(arg: &str) -> Result<CgroupSpec, CgroupTargetError> {
    let root = v2_root()?;
    let given = Path::new(arg);
    let path = if given.starts_with(&root) {
        given.to_path_buf()
    } else {
        root.join(arg.trim_start_matches('/'))
    };
    let not_a_cgroup = || CgroupTargetError::NotACgroup {
        path: path.clone(),
        root: root.clone(),
    };
    if !path.join("cgroup.procs").exists() {
        return Err(not_a_cgroup());
    }
    let relative = path.strip_prefix(&root).map_err(|_| not_a_cgroup())?;
    let id = std::fs::metadata(&path).map_err(|_| not_a_cgroup())?.ino();
    Ok(CgroupSpec {
        name: format!("/{}", relative.display()),
        level: relative.components().count() as u32,
        path,
        id,
    })
}

/// Every process in the cgroup and its sub-cgroups now.
pub fn processes_in(spec: &CgroupSpec) -> Vec<u32> {
    let mut pids = BTreeSet::new();
    let mut dirs = vec![spec.path.clone()];
    while let Some(dir) = dirs.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            dirs.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.into_iter().collect()
}

/// Whether the cgroup still exists (a removed cgroup ends the watch like
/// an exited process).
pub fn exists(spec: &CgroupSpec) -> bool {
    std::fs::metadata(&spec.path).is_ok_and(|m| m.ino() == spec.id)
}

/// The container id in one component of a cgroup path, as the runtimes
/// name their cgroups: Docker (`docker-ID.scope` with systemd, `docker/ID`
/// with cgroupfs), containerd and Kubernetes (`cri-containerd-ID.scope`),
/// CRI-O (`crio-ID.scope`), Podman (`libpod-ID.scope`, `libpod-ID`).
pub fn container_id_of(component: &str) -> Option<&str> {
    let id = component.strip_suffix(".scope").unwrap_or(component);
    let id = [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
    ]
    .iter()
    .find_map(|prefix| id.strip_prefix(prefix))
    .unwrap_or(id);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The v2 path (`/a/b`) of the container `id_prefix` among `paths`, cut
/// after the component that names it (a container's processes may sit in
/// sub-cgroups of it). Several containers matching is an error naming them.
pub fn find_container(paths: &BTreeSet<String>, id_prefix: &str) -> Result<String, String> {
    let mut found = BTreeSet::new();
    for path in paths {
        let mut prefix = String::new();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            prefix.push('/');
            prefix.push_str(component);
            if container_id_of(component).is_some_and(|id| id.starts_with(id_prefix)) {
                found.insert(prefix.clone());
                break;
            }
        }
    }
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(format!(
            "no process runs in a container whose id starts with {id_prefix} (looked in the \
             cgroup v2 path of every process in /proc/*/cgroup); check the id with `docker ps \
             --no-trunc`, `crictl ps` or `podman ps --no-trunc`"
        )),
        _ => Err(format!(
            "{id_prefix} matches several containers: {}; give more of the id",
            found.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The v2 paths of every process's cgroup now.
fn v2_paths_of_processes() -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .collect()
}

/// A container name becomes its id through the runtime's own CLI (names
/// are not in cgroup paths); the first runtime that knows it answers.
fn id_of_name(name: &str) -> Option<String> {
    [
        ("docker", &["inspect", "--format", "{{.Id}}"][..]),
        ("podman", &["inspect", "--format", "{{.Id}}"][..]),
        (
            "crictl",
            &[
                "inspect",
                "--output",
                "go-template",
                "--template",
                "{{.status.id}}",
            ][..],
        ),
    ]
    .iter()
    .find_map(|(cli, args)| {
        let out = Command::new(cli).args(*args).arg(name).output().ok()?;
        let id = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && container_id_of(&id).is_some()).then_some(id)
    })
}

/// `--container NAME|ID`: an id (or a prefix of at least 4 hex digits) is
/// found in the processes' cgroup paths; a name is asked of docker, podman
/// or crictl first.
pub fn resolve_container(arg: &str) -> Result<CgroupSpec, CgroupTargetError> {
    let looks_like_id = arg.len() >= 4 && arg.bytes().all(|b| b.is_ascii_hexdigit());
    let id = if looks_like_id {
        arg.to_ascii_lowercase()
    } else {
        id_of_name(arg).ok_or_else(|| {
            CgroupTargetError::Container(format!(
                "no container named {arg}: docker, podman and crictl do not know it (or are not \
                 installed); give the container id instead (docker ps --no-trunc)"
            ))
        })?
    };
    let path =
        find_container(&v2_paths_of_processes(), &id).map_err(CgroupTargetError::Container)?;
    resolve_cgroup(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2b9a0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";

    #[test]
    fn finds_the_v2_mount_on_hybrid_and_unified_hosts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      35 31 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                      36 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            parse_v2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_v2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(parse_v2_mount("garbage\n - \n"), None);
    }

    #[test]
    fn every_runtime_names_its_cgroup_with_the_id() {
        for component in [
            format!("docker-{ID}.scope"),
            ID.to_owned(),
            format!("cri-containerd-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("libpod-{ID}.scope"),
            format!("libpod-{ID}"),
        ] {
            assert_eq!(container_id_of(&component), Some(ID), "{component}");
        }
        assert_eq!(container_id_of("system.slice"), None);
        assert_eq!(container_id_of("docker-abc.scope"), None);
    }

    #[test]
    fn a_container_is_its_cgroup_not_the_sub_cgroups_of_its_processes() {
        let paths: BTreeSet<String> = [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/system.slice/docker-{ID}.scope/init"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/\
                 cri-containerd-{}.scope",
                "a".repeat(64)
            ),
            "/user.slice".to_owned(),
        ]
        .into();
        assert_eq!(
            find_container(&paths, &ID[..12]),
            Ok(format!("/system.slice/docker-{ID}.scope"))
        );
        assert!(
            find_container(&paths, "aaaa")
                .unwrap()
                .contains("cri-containerd-")
        );
        let none = find_container(&paths, "bbbb").unwrap_err();
        assert!(none.contains("no process runs in a container"), "{none}");
        let two: BTreeSet<String> = [
            format!("/docker/{ID}"),
            format!("/docker/{}", ID.replace("4f1c", "4f1d")),
        ]
        .into();
        assert!(find_container(&two, "4f1").unwrap_err().contains("several"));
    }
}
