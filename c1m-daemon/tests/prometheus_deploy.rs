//! deploy/ as a whole: the systemd unit's command line, the Prometheus scrape
//! config, the alert rules and the Grafana dashboard agree with each other
//! and with the daemon. `promtool` checks the files; a kernel test runs the
//! unit's own `ExecStart` script (on a free loopback port) against a real
//! echo server and a real `prometheus` scraping it with the token, as
//! deploy/prometheus/prometheus.yml says.

mod common;

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn deploy(path: &str) -> PathBuf {
    Path::new(DEPLOY).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `prometheus` and `promtool` (Debian's `prometheus` package), or a loud
/// skip; `C1M_REQUIRE_KERNEL_TESTS=1` (cargo xtask test, CI) turns the skip
/// into a failure.
fn prometheus_installed(test: &str) -> bool {
    let missing: Vec<&str> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(&format!(
        "{test}: {missing:?} not installed (apt-get install prometheus)"
    ));
    false
}

/// Run `promtool <args>` in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The token the unit loads and the one Prometheus sends, as one would
/// write them (`head -c 32 /dev/urandom | base64 > token`: a final newline).
const TOKEN_FILE: &str = "Zm9yIHRoZSB0ZXN0IG9ubHkgLSBub3QgYSBzZWNyZXQ=\n";

/// deploy/prometheus/ copied into `dir` with the token file beside it,
/// the example targets replaced by `target` (when given) and the intervals
/// shortened to `interval`.
fn prometheus_config(dir: &TempDir, target: Option<&str>, interval: &str) -> PathBuf {
    let original = read(&deploy("prometheus/prometheus.yml"));
    let credentials = original
        .lines()
        .find_map(|l| l.trim().strip_prefix("credentials_file:"))
        .expect("prometheus.yml sends a token (authorization.credentials_file)")
        .trim()
        .to_owned();
    assert!(
        original.contains("type: Bearer"),
        "the daemon wants `Authorization: Bearer <token>`"
    );
    let mut config = String::new();
    let mut replaced = false;
    for line in original.lines() {
        let line = line
            .replace(
                "scrape_interval: 15s",
                &format!("scrape_interval: {interval}"),
            )
            .replace(
                "evaluation_interval: 15s",
                &format!("evaluation_interval: {interval}"),
            );
        match target {
            Some(target) if line.trim_start().starts_with("- ") && line.contains(":9808") => {
                if !replaced {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    config.push_str(&format!("{indent}- {target}\n"));
                    replaced = true;
                }
            }
            _ => config.push_str(&format!("{line}\n")),
        }
    }
    assert!(
        target.is_none() || replaced,
        "no :9808 target in prometheus.yml"
    );
    dir.write(&credentials, TOKEN_FILE);
    dir.write("c1m.rules.yml", &read(&deploy("prometheus/c1m.rules.yml")));
    dir.write("prometheus.yml", &config)
}

/// The alert rules deploy/prometheus/c1m.rules.yml defines.
fn alert_rules() -> usize {
    read(&deploy("prometheus/c1m.rules.yml"))
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count()
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_rules_pass_their_tests() {
    if !prometheus_installed("promtool checks") {
        return;
    }
    let dir = TempDir::new("promtool");
    let config = prometheus_config(&dir, None, "15s");
    let checked = promtool(&dir.0, &["check", "config", config.to_str().unwrap()]);
    let expected = format!("{} rules found", alert_rules());
    assert!(checked.contains(&expected), "{checked}");

    let rules = deploy("prometheus");
    promtool(&rules, &["check", "rules", "c1m.rules.yml"]);
    let tested = promtool(&rules, &["test", "rules", "c1m.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert has a test that sees it fire and one that sees it quiet.
    let tests = read(&rules.join("c1m.rules.test.yml"));
    for alert in [
        "C1MNearCeiling",
        "C1MLimitHit",
        "C1MDroppingEvents",
        "C1MDaemonDown",
    ] {
        let evaluations: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|e| e.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            evaluations.iter().any(|e| e.contains("exp_alerts: []")),
            "{alert}: no test where it stays quiet"
        );
        assert!(
            evaluations.iter().any(|e| e.contains("exp_labels:")),
            "{alert}: no test where it fires"
        );
    }
}

#[test]
fn the_dashboard_reads_c1m_series_through_its_datasource_variable() {
    let dashboard: Value =
        serde_json::from_str(&read(&deploy("grafana/c1m-dashboard.json"))).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 8, "{exprs:?}");
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
    }
    for series in [
        "c1m_connections{",
        "c1m_ceiling_connections",
        "c1m_binding_limit_info",
        "c1m_cost_kernel_component_bytes",
        "c1m_drops_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(series)),
            "no panel shows {series}"
        );
    }
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

/// A GET on loopback with an optional bearer token: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query against Prometheus's HTTP API: its result vector.
fn query(prometheus: &str, promql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", url_encode(promql));
    let (status, body) = get(prometheus, &path, None).ok_or("no answer")?;
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 || value["status"] != "success" {
        return Err(format!("{promql}: {status} {body}"));
    }
    Ok(value["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn sample_value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

/// Poll `check` every 500 ms until it returns `Some`, for up to `timeout`;
/// panic with `context()` (what Prometheus says) otherwise.
fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The unit's `ExecStart=/bin/sh -c '<script>'` and the name of the
/// credential it loads (`LoadCredential=<name>:<path>`).
fn unit_script_and_credential() -> (String, String) {
    let unit = read(&deploy("c1m-daemon.service"));
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_owned()
    };
    let exec = value("ExecStart=");
    let script = exec
        .strip_prefix("/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("ExecStart is not /bin/sh -c '...': {exec}"))
        .to_owned();
    let credential = value("LoadCredential=")
        .split_once(':')
        .expect("LoadCredential=<name>:<path>")
        .0
        .to_owned();
    (script, credential)
}

#[test]
fn prometheus_scrapes_the_daemon_started_as_the_unit_starts_it() {
    if !kernel_tests_allowed("prometheus scrape") || !prometheus_installed("prometheus scrape") {
        return;
    }
    let dir = TempDir::new("prometheus-deploy");
    let (echo, echo_addr) = spawn_echo();

    // The daemon, by the unit's own script: its pid file, its credentials
    // directory, its binary; only the address moves to a free loopback
    // port (the token is checked there too).
    let (script, credential) = unit_script_and_credential();
    let daemon_addr = format!("127.0.0.1:{}", free_port());
    for from in ["/usr/local/bin/c1m-daemon", "0.0.0.0:9808"] {
        assert!(script.contains(from), "the unit's script has no {from}");
    }
    let script = script
        .replace("/usr/local/bin/c1m-daemon", DAEMON)
        .replace("0.0.0.0:9808", &daemon_addr);
    let pidfile = dir.write("target.pid", &format!("{}\n", echo.pid()));
    dir.write(&format!("credentials/{credential}"), TOKEN_FILE);
    let daemon = ChildGuard {
        child: Command::new("/bin/sh")
            .args(["-c", &script])
            .env("C1M_TARGET_PIDFILE", &pidfile)
            .env("CREDENTIALS_DIRECTORY", dir.0.join("credentials"))
            .env_remove("C1M_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running the unit's ExecStart"),
    };
    let token = TOKEN_FILE.trim();
    poll(
        Duration::from_secs(30),
        "the daemon's first sample",
        || get(&daemon_addr, "/metrics", Some(token)).filter(|(s, b)| *s == 200 && !b.is_empty()),
        || format!("{:?}", get(&daemon_addr, "/metrics", Some(token))),
    );
    let unauthorised = get(&daemon_addr, "/metrics", None).unwrap().0;
    assert_eq!(
        unauthorised, 401,
        "the unit's daemon serves without its token"
    );

    // Connections for it to count.
    let held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(echo_addr).unwrap())
        .collect();

    // Prometheus from deploy/prometheus/prometheus.yml, scraping every second.
    let prometheus_addr = format!("127.0.0.1:{}", free_port());
    let config = prometheus_config(&dir, Some(&daemon_addr), "1s");
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let _prometheus = ChildGuard {
        child: Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    };
    let context = || {
        format!(
            "targets: {:?}\nprometheus.log:\n{}",
            get(&prometheus_addr, "/api/v1/targets", None).map(|r| r.1),
            std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default()
        )
    };

    poll(
        Duration::from_secs(60),
        r#"up{job="c1m"} == 1"#,
        || {
            let up = query(&prometheus_addr, r#"up{job="c1m"}"#).ok()?;
            (up.len() == 1 && sample_value(&up[0]) == 1.0).then_some(())
        },
        context,
    );
    let open = poll(
        Duration::from_secs(60),
        "c1m_connections_open >= 5",
        || {
            let open = query(&prometheus_addr, r#"c1m_connections_open{job="c1m"}"#).ok()?;
            open.first().map(sample_value).filter(|n| *n >= 5.0)
        },
        context,
    );
    eprintln!("prometheus sees c1m_connections_open = {open}");

    // The series the rules and the dashboard name are the ones scraped
    // (counters as OpenMetrics names them: `_total`).
    for name in [
        "c1m_connections",
        "c1m_connections_accepted_total",
        "c1m_connections_closed_total",
        "c1m_ceiling_connections",
        "c1m_ceiling_exceeded",
        "c1m_ceiling_binding_connections",
        "c1m_binding_limit_info",
        "c1m_cost_kernel_component_bytes",
        "c1m_drops_total",
    ] {
        let found = query(
            &prometheus_addr,
            &format!(r#"{{__name__="{name}",job="c1m"}}"#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!found.is_empty(), "Prometheus has no {name}");
    }
    // The limit counters node_exporter leaves out, from the target's
    // namespace: netstat always, conntrack's when its module is loaded.
    let mut counters = vec!["c1m_netstat_listen_overflows_total"];
    if std::path::Path::new("/proc/net/stat/nf_conntrack").exists() {
        counters.extend([
            "c1m_conntrack_insert_failed_total",
            "c1m_conntrack_drop_total",
            "c1m_conntrack_early_drop_total",
        ]);
    } else {
        eprintln!("nf_conntrack is not loaded here: its counters are not checked");
    }
    for name in counters {
        let found = query(
            &prometheus_addr,
            &format!(r#"{{__name__="{name}",job="c1m"}}"#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!found.is_empty(), "Prometheus has no {name}");
    }

    // The rules load and evaluate without error against the real series.
    poll(
        Duration::from_secs(30),
        "the c1m rules to evaluate",
        || {
            let (_, body) = get(&prometheus_addr, "/api/v1/rules", None)?;
            let rules: Value = serde_json::from_str(&body).ok()?;
            let group = rules["data"]["groups"]
                .as_array()?
                .iter()
                .find(|g| g["name"] == "c1m")?
                .clone();
            let rules = group["rules"].as_array()?;
            let bad: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
            assert!(
                bad.iter().all(|r| r["health"] == "unknown"),
                "rules failing: {bad:?}"
            );
            (rules.len() == alert_rules() && bad.is_empty()).then_some(())
        },
        context,
    );

    // Every dashboard query is valid PromQL, and the main ones have data.
    let dashboard: Value =
        serde_json::from_str(&read(&deploy("grafana/c1m-dashboard.json"))).unwrap();
    for expr in dashboard_exprs(&dashboard) {
        let promql = expr
            .replace("$instance", ".*")
            .replace("$__rate_interval", "1m");
        let result = query(&prometheus_addr, &promql).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{} series: {promql}", result.len());
        if promql.starts_with("c1m_connections{")
            || promql.starts_with("sum by (instance) (c1m_connections_open")
        {
            assert!(!result.is_empty(), "no data for {promql}");
        }
    }

    drop((held, daemon, echo));
}
