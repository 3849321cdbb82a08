//! `load --shard I/N`: one load spread over hosts. Network namespaces play
//! the hosts, each joined to a server namespace by a veth pair (private
//! addresses that exist only inside them, all removed on drop, panics
//! included), with the real `c1m-daemon echo` in the server namespace and
//! real `c1m-daemon load` processes in the hosts. The server's own view
//! (`ss` in its namespace, while the connections are held) checks that the
//! shards reach the total exactly and never use a (source address, source
//! port) pair twice. Also: `load --metrics` read by a Prometheus text
//! parser, the Kubernetes Job read as YAML, and the SSH fan-out script run
//! over the namespaces.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    process::{Command, Stdio},
    time::Duration,
};

use c1m_daemon::protocol::{HostShard, LoadEvent, LoadOutcome, from_line};
use common::*;

/// The echo server's address, the same from every host: on the server
/// namespace's loopback device, routed through each host's veth.
const SERVICE: &str = "10.200.0.1";
const PORT: u16 = 7007;

/// A server namespace and `hosts` host namespaces, host i on the link
/// 10.201.i.0/24 (server 10.201.i.1, host 10.201.i.2 and up), each with a
/// route to [`SERVICE`]. Deleting a namespace deletes its veth end, and
/// with it the pair.
struct Topology {
    hosts: Vec<Netns>,
    server: Netns,
}

impl Topology {
    fn new(tag: &str, hosts: usize, addresses_per_host: usize) -> Topology {
        let server = Netns::new(&format!("{tag}-srv")).expect("ip netns add (server)");
        server.run(&["ip", "addr", "add", &format!("{SERVICE}/32"), "dev", "lo"]);
        let mut made = Vec::new();
        for i in 0..hosts {
            let host = Netns::new(&format!("{tag}-h{i}")).expect("ip netns add (host)");
            let link = format!("veth-s{i}");
            server.run(&[
                "ip", "link", "add", &link, "type", "veth", "peer", "name", "veth-h", "netns",
                &host.0,
            ]);
            server.run(&[
                "ip",
                "addr",
                "add",
                &format!("10.201.{i}.1/24"),
                "dev",
                &link,
            ]);
            server.run(&["ip", "link", "set", &link, "up"]);
            for a in 0..addresses_per_host {
                let address = format!("10.201.{i}.{}/24", a + 2);
                host.run(&["ip", "addr", "add", &address, "dev", "veth-h"]);
            }
            host.run(&["ip", "link", "set", "veth-h", "up"]);
            let gateway = format!("10.201.{i}.1");
            host.run(&[
                "ip",
                "route",
                "add",
                &format!("{SERVICE}/32"),
                "via",
                &gateway,
            ]);
            made.push(host);
        }
        Topology {
            hosts: made,
            server,
        }
    }

    /// `c1m-daemon echo` on [`SERVICE`] in the server namespace.
    fn echo(&self) -> ChildGuard {
        let listen = format!("{SERVICE}:{PORT}");
        let (guard, _) = spawn_echo_in(
            &self.server.prefix(),
            &["--listen", &listen, "--connections", "8000"],
        );
        guard
    }

    /// The server side's established connections to the echo port, as
    /// (peer address, peer port), from `ss` in the server namespace.
    fn peers(&self) -> Vec<(IpAddr, u16)> {
        let filter = format!("( sport = :{PORT} )");
        let text = self
            .server
            .output(&["ss", "-tnH", "state", "established", &filter]);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let peer = line.split_whitespace().last().expect("a peer column");
                let (ip, port) = peer.rsplit_once(':').expect("ADDR:PORT");
                (ip.parse().unwrap(), port.parse().unwrap())
            })
            .collect()
    }
}

/// This namespace's ephemeral port range, read where the load runs.
fn port_range(ns: &Netns) -> (u64, u64) {
    let text = ns.output(&["cat", "/proc/sys/net/ipv4/ip_local_port_range"]);
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// Slice `index` of `count` of the range, as the README promises: the
/// range cut in `count` contiguous parts of (almost) equal size.
fn slice_of((low, high): (u64, u64), index: u64, count: u64) -> std::ops::RangeInclusive<u64> {
    let len = high - low + 1;
    (low + len * index / count)..=(low + len * (index + 1) / count - 1)
}

/// `total` split `count` ways, the first `total % count` one larger.
fn share(total: u64, index: u64, count: u64) -> u64 {
    total / count + u64::from(index < total % count)
}

/// A running `load --json`, its stdout lines readable with a timeout.
struct Load {
    guard: ChildGuard,
    lines: LineReader,
    stderr: LineReader,
}

fn start_load(prefix: &[&str], args: &[&str]) -> Load {
    let mut child = daemon_in(prefix)
        .args(["load", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning c1m-daemon load");
    let lines = LineReader::new(child.stdout.take().unwrap());
    let stderr = LineReader::new_stderr(child.stderr.take().unwrap());
    Load {
        guard: ChildGuard { child },
        lines,
        stderr,
    }
}

impl Load {
    fn wait_ramped(&self) {
        self.lines
            .wait_for(Duration::from_secs(90), "the ramped event", |l| {
                matches!(from_line::<LoadEvent>(l), Ok(LoadEvent::Ramped(_)))
            });
    }

    /// The `done` outcome and the exit code.
    fn finish(mut self) -> (LoadOutcome, Option<i32>) {
        let line = self
            .lines
            .wait_for(Duration::from_secs(90), "the done event", |l| {
                matches!(from_line::<LoadEvent>(l), Ok(LoadEvent::Done(_)))
            });
        let Ok(LoadEvent::Done(outcome)) = from_line::<LoadEvent>(&line) else {
            unreachable!()
        };
        let code = self.guard.child.wait().unwrap().code();
        while let Some(line) = self.stderr.next_line(Duration::from_millis(100)) {
            eprintln!("  load stderr: {line}");
        }
        (outcome, code)
    }
}

#[test]
fn three_hosts_reach_the_total_exactly_and_never_share_a_source_pair() {
    if !kernel_tests_allowed("load --shard over 3 namespaces") {
        return;
    }
    const TOTAL: u64 = 3_001;
    let net = Topology::new("shards", 3, 1);
    let _echo = net.echo();
    let target = format!("{SERVICE}:{PORT}");
    let started = std::time::Instant::now();
    let loads: Vec<Load> = net
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let shard = format!("{i}/3");
            start_load(
                &host.prefix(),
                &[
                    "--shard",
                    &shard,
                    "--target",
                    &target,
                    "--connections",
                    &TOTAL.to_string(),
                    "--hold",
                    "6s",
                ],
            )
        })
        .collect();
    for load in &loads {
        load.wait_ramped();
    }
    let ramped_in = started.elapsed();
    let peers = net.peers();
    let distinct: BTreeSet<_> = peers.iter().collect();
    assert_eq!(
        distinct.len(),
        peers.len(),
        "a (source address, port) pair used twice"
    );
    assert_eq!(peers.len() as u64, TOTAL, "the server holds the whole load");
    for (i, host) in net.hosts.iter().enumerate() {
        let i = i as u64;
        let address: IpAddr = format!("10.201.{i}.2").parse().unwrap();
        let slice = slice_of(port_range(host), i, 3);
        let mine: Vec<u16> = peers
            .iter()
            .filter(|(ip, _)| *ip == address)
            .map(|(_, port)| *port)
            .collect();
        assert_eq!(mine.len() as u64, share(TOTAL, i, 3), "host {i}");
        let outside: Vec<_> = mine
            .iter()
            .filter(|p| !slice.contains(&u64::from(**p)))
            .collect();
        assert!(
            outside.is_empty(),
            "host {i} bound outside its ports {slice:?}: {outside:?}"
        );
    }
    let mut sum = 0;
    for (i, load) in loads.into_iter().enumerate() {
        let i = i as u64;
        let (outcome, code) = load.finish();
        eprintln!(
            "shard {i}/3: {} connections, ramp {:.2}s at {:.0}/s",
            outcome.peak_open, outcome.ramp_seconds, outcome.ramp_rate
        );
        assert_eq!(code, Some(0), "shard {i}: {outcome:?}");
        assert!(outcome.reached, "shard {i}: {outcome:?}");
        assert_eq!(outcome.host_shard, Some(HostShard { index: i, count: 3 }));
        assert_eq!(outcome.requested, share(TOTAL, i, 3));
        assert_eq!(outcome.peak_open, share(TOTAL, i, 3));
        assert!(outcome.totals.counts.failures.is_empty(), "{outcome:?}");
        sum += outcome.peak_open;
    }
    assert_eq!(sum, TOTAL);
    eprintln!("3 shards held {TOTAL} connections; all ramped {ramped_in:.2?} after start");
}

#[test]
fn shards_on_one_box_split_its_ports_or_deal_out_its_addresses() {
    if !kernel_tests_allowed("load --shard on shared addresses") {
        return;
    }
    const TOTAL: u64 = 1_501;
    // One host with six addresses: three shards there stand for three
    // hosts behind one NAT.
    let net = Topology::new("shared", 1, 6);
    let box_ns = &net.hosts[0];
    let _echo = net.echo();
    let target = format!("{SERVICE}:{PORT}");
    let run = |source_ips: &str| -> Vec<(IpAddr, u16)> {
        let loads: Vec<Load> = (0..3)
            .map(|i| {
                let shard = format!("{i}/3");
                start_load(
                    &box_ns.prefix(),
                    &[
                        "--shard",
                        &shard,
                        "--target",
                        &target,
                        "--connections",
                        &TOTAL.to_string(),
                        "--source-ips",
                        source_ips,
                        "--hold",
                        "5s",
                    ],
                )
            })
            .collect();
        for load in &loads {
            load.wait_ramped();
        }
        let peers = net.peers();
        for (i, load) in loads.into_iter().enumerate() {
            let (outcome, code) = load.finish();
            assert_eq!(code, Some(0), "shard {i}: {outcome:?}");
            assert_eq!(outcome.peak_open, share(TOTAL, i as u64, 3));
        }
        let distinct: BTreeSet<_> = peers.iter().collect();
        assert_eq!(distinct.len(), peers.len(), "a source pair used twice");
        assert_eq!(peers.len() as u64, TOTAL);
        peers
    };

    // One address for three shards: each binds in its third of the ports.
    let range = port_range(box_ns);
    let peers = run("10.201.0.2");
    for i in 0..3u64 {
        let slice = slice_of(range, i, 3);
        let in_slice = peers
            .iter()
            .filter(|(_, port)| slice.contains(&u64::from(*port)))
            .count() as u64;
        assert_eq!(in_slice, share(TOTAL, i, 3), "shard {i}'s ports {slice:?}");
    }

    // Six addresses for three shards: shard i takes addresses i and i + 3.
    let peers = run("10.201.0.2-10.201.0.7");
    let by_address: BTreeMap<IpAddr, u64> = peers.iter().fold(BTreeMap::new(), |mut m, (ip, _)| {
        *m.entry(*ip).or_insert(0) += 1;
        m
    });
    for i in 0..3u64 {
        let mine: u64 = [2 + i, 5 + i]
            .iter()
            .map(|last| {
                let ip: IpAddr = format!("10.201.0.{last}").parse().unwrap();
                by_address.get(&ip).copied().unwrap_or(0)
            })
            .sum();
        assert_eq!(mine, share(TOTAL, i, 3), "shard {i}: {by_address:?}");
    }

    // Too few pairs for a shard's share: a clear error before any connect.
    box_ns.run(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_local_port_range=40000 40299",
    ]);
    let output = daemon_in(&box_ns.prefix())
        .args(["load", "--shard", "0/3", "--target", &target])
        .args(["--connections", "3001", "--source-ips", "10.201.0.2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("1001 connections need as many source (address, port) pairs, but it has 100")
            && stderr.contains("40000-40299"),
        "{stderr}"
    );
}

#[test]
fn bad_shards_are_refused_with_the_syntax() {
    for (shard, says) in [
        ("3/3", "with 3 shards it goes up to 2; got 3"),
        ("0/0", "COUNT must be at least 1"),
        ("two/3", "write INDEX/COUNT"),
        ("1", "write INDEX/COUNT"),
    ] {
        let output = daemon()
            .args(["load", "--target", "127.0.0.1:9", "--shard", shard])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{shard}: {stderr}");
        assert!(stderr.contains(says), "{shard}: {stderr}");
    }
    let output = daemon()
        .args([
            "load",
            "--target",
            "127.0.0.1:9",
            "--shard",
            "4/5",
            "--connections",
            "4",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("leaves this shard none: give at least 5"),
        "{stderr}"
    );
}

#[test]
fn metrics_carry_the_shard_and_read_as_prometheus_text() {
    use prometheus_parse::{Scrape, Value};
    let (_echo, line) = spawn_echo_in(&[], &[]);
    let metrics = format!("127.0.0.1:{}", free_port());
    let load = start_load(
        &[],
        &[
            "--shard",
            "1/2",
            "--target",
            &echo_address(&line).to_string(),
            "--connections",
            "301",
            "--metrics",
            &metrics,
            "--hold",
            "3s",
        ],
    );
    load.wait_ramped();
    // The metrics follow the load once a second: wait for the ramp there.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let scrape = loop {
        let (status, body) = http_get(&metrics, "/metrics");
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect(&body);
        let ramped = scrape.samples.iter().any(|s| {
            s.metric == "c1m_load_ramped" && matches!(s.value, Value::Gauge(v) if v == 1.0)
        });
        if ramped || std::time::Instant::now() > deadline {
            break scrape;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |name: &str| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", scrape.samples));
        assert_eq!(sample.labels.get("shard"), Some("1"), "{name}");
        assert_eq!(sample.labels.get("shards"), Some("2"), "{name}");
        match sample.value {
            Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("c1m_load_ramped"), 1.0);
    assert_eq!(value("c1m_load_connections_open"), 150.0);
    assert_eq!(value("c1m_load_connections_target"), 150.0);
    assert!(value("c1m_load_connection_attempts_total") >= 150.0);
    assert_eq!(value("c1m_load_connections_connected_total"), 150.0);
    let (outcome, code) = load.finish();
    assert_eq!((code, outcome.peak_open), (Some(0), 150));
}

/// deploy/k8s/load-job.yaml, parsed.
fn load_job() -> yaml_rust2::Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/load-job.yaml");
    let text = std::fs::read_to_string(path).expect(path);
    let mut docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("load-job.yaml is YAML");
    assert_eq!(docs.len(), 1, "one document");
    docs.remove(0)
}

#[test]
fn the_kubernetes_job_runs_one_shard_per_index_sized_for_its_share() {
    let job = load_job();
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().expect("completions");
    assert_eq!(spec["parallelism"].as_i64(), Some(completions));
    let pod = &spec["template"];
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some("9809"));
    let sysctls: Vec<&str> = pod["spec"]["securityContext"]["sysctls"]
        .as_vec()
        .expect("pod sysctls")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        sysctls.contains(&"net.ipv4.ip_local_port_range"),
        "{sysctls:?}"
    );
    let container = &pod["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_vec()
        .into_iter()
        .flatten()
        .chain(container["args"].as_vec().into_iter().flatten())
        .filter_map(|a| a.as_str())
        .collect();
    let after = |flag: &str| {
        let at = command.iter().position(|a| *a == flag);
        at.and_then(|at| command.get(at + 1).copied())
            .unwrap_or_else(|| panic!("no {flag} in {command:?}"))
    };
    assert_eq!(
        command.iter().filter(|a| **a == "load").count(),
        1,
        "{command:?}"
    );
    assert_eq!(
        after("--shard"),
        format!("$(JOB_COMPLETION_INDEX)/{completions}"),
        "the shard count must be the Job's completions"
    );
    assert_eq!(after("--metrics"), "0.0.0.0:9809");
    assert!(command.contains(&"--json"), "{command:?}");
    after("--target");
    // The memory request covers a pod's share at the measured cost: 1.4 KiB
    // in userspace and 4 KiB in the kernel per connection.
    let total: u64 = after("--connections").parse().unwrap();
    let per_pod = total.div_ceil(completions as u64);
    let need = per_pod * (1434 + 4096);
    let request = container["resources"]["requests"]["memory"]
        .as_str()
        .expect("a memory request");
    let request = match request.strip_suffix("Mi") {
        Some(mib) => mib.parse::<u64>().unwrap() << 20,
        None => request.strip_suffix("Gi").unwrap().parse::<u64>().unwrap() << 30,
    };
    assert!(
        request >= need,
        "request {request} B < {per_pod} x 5.4 KiB = {need} B"
    );
    // A pod's one source address needs a port per connection: the range
    // the pod sysctl sets, or its 1/N slice without --no-port-slice.
    let range = pod["spec"]["securityContext"]["sysctls"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str() == Some("net.ipv4.ip_local_port_range"))
        .and_then(|s| s["value"].as_str())
        .unwrap();
    let (low, high) = range.split_once(' ').expect("LOW HIGH");
    let mut ports = high.parse::<u64>().unwrap() - low.parse::<u64>().unwrap() + 1;
    if !command.contains(&"--no-port-slice") {
        ports /= completions as u64;
    }
    assert!(
        per_pod <= ports,
        "{per_pod} connections per pod exceed its {ports} ports ({range})"
    );
    match Command::new("kubeconform")
        .args(["-strict", "-summary"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/k8s/load-job.yaml"
        ))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!(
            "kubeconform not installed: load-job.yaml checked as YAML and by the assertions \
             above, not against the Kubernetes schema"
        ),
    }
}

#[test]
fn the_ssh_fan_out_runs_shard_i_on_host_i_and_waits() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ssh/load-fanout.sh");
    let syntax = Command::new("bash").args(["-n", script]).status().unwrap();
    assert!(syntax.success(), "bash -n {script}");
    match Command::new("shellcheck").arg(script).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!("shellcheck not installed: load-fanout.sh checked with bash -n only"),
    }
    if !kernel_tests_allowed("ssh fan-out over namespaces") {
        return;
    }
    // The namespaces are the hosts; the transport runs the command in the
    // named one where ssh would run it on the named host.
    const TOTAL: u64 = 301;
    let net = Topology::new("fanout", 3, 1);
    let _echo = net.echo();
    let dir = TempDir::new("fanout");
    let hosts: String = net.hosts.iter().map(|h| format!("{}\n", h.0)).collect();
    let hosts_file = dir.write("hosts", &format!("# three namespaces\n{hosts}\n"));
    let transport = dir.write(
        "netns-ssh",
        "#!/bin/sh\nhost=$1; shift\nexec ip netns exec \"$host\" sh -c \"$*\"\n",
    );
    Command::new("chmod")
        .arg("+x")
        .arg(&transport)
        .status()
        .unwrap();
    let logs = dir.0.join("logs");
    let output = Command::new("bash")
        .arg(script)
        .arg(&hosts_file)
        .args(["--target", &format!("{SERVICE}:{PORT}")])
        .args(["--connections", &TOTAL.to_string(), "--hold", "1s"])
        .env("C1M_SSH", &transport)
        .env("C1M_REMOTE_BIN", DAEMON)
        .env("C1M_LOG_DIR", &logs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut sum = 0;
    for (i, host) in net.hosts.iter().enumerate() {
        let log = std::fs::read_to_string(logs.join(format!("{i}-{}.jsonl", host.0))).unwrap();
        let done = log
            .lines()
            .find_map(|l| match from_line::<LoadEvent>(l) {
                Ok(LoadEvent::Done(outcome)) => Some(outcome),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no done event from host {i}: {log}"));
        assert_eq!(
            done.host_shard,
            Some(HostShard {
                index: i as u64,
                count: 3
            })
        );
        assert_eq!(done.peak_open, share(TOTAL, i as u64, 3));
        sum += done.peak_open;
    }
    assert_eq!(sum, TOTAL, "{stdout}");
    assert!(stdout.contains("3 of 3 shards succeeded"), "{stdout}");
}
