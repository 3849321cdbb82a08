// c1m dashboard: reads only the public JSON API (/api/v1/report, and the
// same report pushed on /api/v1/events at every sample).
"use strict";

const HISTORY = 900; // points kept per series (15 min at 1 s)
const history = { t: [], est: [], tw: [], other: [], acc: [], clo: [], twmax: [], mem: [], fds: [] };
let previous = null;
const charts = {};

function renderHeadline(r) {
  const c = r.ceiling;
  const pids = r.target.pids.join(", ");
  const who = r.target.cgroup ? `cgroup ${r.target.cgroup}, pid` : "pid";
  $("target").textContent = `target ${who} ${pids || "–"}${r.target.alive ? "" : " (exited)"}`;
  if (!c) return;
  $("verdict").textContent = c.verdict;
  // The soonest limit the recent growth runs out (none while nothing grows).
  const soonest = (c.forecasts || [])[0];
  $("forecast").textContent = soonest ? `Time to exhaustion: ${soonest.basis}.` : "";
  const hit = c.binding && c.limits.some((l) => l.exceeded && l.name === c.binding.name);
  $("headline").classList.toggle("hit", !!hit);
  $("remedy").textContent = c.binding ? c.binding.remedy : "–";
  const b = c.binding;
  $("binding-source").textContent = b ? `${b.kind} limit, set at ${b.source}` : "";
  $("evidence").replaceChildren(...(b ? b.evidence : []).map((e) => el("li", {}, e)));
  const conn = r.connections;
  $("now").textContent = `Now: ${fmtCount(conn.current)} open connections` +
    (c.binding && c.binding.max_connections ? ` of ${fmtCount(c.binding.max_connections)} allowed` : "") +
    ` · ${fmtCount(conn.accepted_total)} accepted, ${fmtCount(conn.closed_total)} closed since c1m attached`;
}

function renderLimits(r) {
  const box = $("limits");
  box.replaceChildren();
  const c = r.ceiling;
  if (!c) return;
  const current = r.connections.current;
  const counted = c.limits.filter((l) => l.max_connections != null).map((l) => l.max_connections);
  const top = Math.log10(Math.max(10, current * 2, ...counted) * 1.5);
  const pos = (n) => Math.max(0, Math.min(100, (Math.log10(Math.max(n, 1)) / top) * 100));
  for (const l of c.limits) {
    if (l.max_connections == null && !l.exceeded) continue;
    const binding = c.binding && c.binding.name === l.name;
    const row = el("div", { class: "row" + (binding ? " binding" : "") + (l.exceeded ? " hit" : ""), "data-limit": l.name });
    const track = el("div", { class: "track", title: l.source });
    track.append(el("div", { class: "fill", style: `width:${l.max_connections != null ? pos(l.max_connections) : 100}%` }));
    track.append(el("div", { class: "marker", style: `left:${pos(current)}%`, title: `now: ${fmtCount(current)}` }));
    const value = l.max_connections != null ? fmtCount(l.max_connections) : "";
    row.append(el("div", { class: "name" }, l.name, el("span", { class: `kind kind-${l.kind}` }, l.kind)), track,
      el("div", { class: "value" }, l.exceeded ? `being hit ${value}` : value),
      el("div", { class: "why" }, `${l.explanation} · set at ${l.source}`,
        ...l.evidence.map((e) => el("div", { class: "evidence" }, `seen: ${e}`))));
    box.append(row);
  }
  const others = c.limits.filter((l) => l.max_connections == null && !l.exceeded);
  if (others.length) {
    box.append(el("div", { class: "others" }, el("b", {}, "Not limiting the count now: "),
      ...others.map((l) => el("span", { title: l.remedy }, `${l.name}: ${l.explanation}. `))));
  }
}

const COST_COLORS = {
  tcp_sock: "#2563eb", tcp6_sock: "#1d4ed8", timewait_sock: "#7c3aed", timewait6_sock: "#6d28d9",
  socket_inode: "#0891b2", file: "#0d9488", dentry: "#059669", epoll_item: "#65a30d",
  epoll_wait_queue: "#a3a3a3", buffers: "#f59e0b", userspace: "#db2777",
};
function renderCost(r) {
  const cost = r.cost_per_connection;
  const parts = Object.entries(cost.kernel_breakdown || {}).filter(([, v]) => v > 0);
  const user = cost.user_marginal_bytes != null && cost.user_marginal_bytes > 0 ? cost.user_marginal_bytes : cost.user_bytes;
  if (user) parts.push(["userspace", user]);
  const total = parts.reduce((s, [, v]) => s + v, 0);
  const bar = $("cost-bar"), legend = $("cost-legend");
  bar.replaceChildren(); legend.replaceChildren();
  for (const [name, v] of parts) {
    bar.append(el("div", { style: `width:${(100 * v) / total}%;background:${COST_COLORS[name] || "#999"}`, title: `${name}: ${fmtBytes(v)}` }));
    legend.append(el("span", {}, el("i", { style: `background:${COST_COLORS[name] || "#999"}` }), `${name} ${fmtBytes(v)}`));
  }
  const facts = [
    ["total per connection", fmtBytes(total)],
    ["kernel", fmtBytes(cost.kernel_bytes) + (cost.kernel_unknown.length ? ` (+ unsized: ${cost.kernel_unknown.join(", ")})` : "")],
    ["userspace", cost.user_marginal_bytes != null ? `${fmtBytes(cost.user_marginal_bytes)} per additional (r² ${cost.user_marginal_r2.toFixed(2)})` : `${fmtBytes(cost.user_bytes)} average`],
    ["file descriptors", cost.fds_marginal != null ? cost.fds_marginal.toFixed(2) : cost.fds != null ? cost.fds.toFixed(2) : "–"],
    ["TIME_WAIT", `${fmtCount(r.time_wait.current)} now, ${r.time_wait.per_second.toFixed(1)}/s entering`],
  ];
  $("cost-facts").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("b", {}, k), v)));
}

// "(last walk 1.2 s, 3 s ago)": at a million sockets walks take over a
// second and run less often than samples.
function walkNote(d) {
  if (d.walk_ms == null) return "";
  const s = (ms) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
  return ` (last walk ${s(d.walk_ms)}, ${s(d.walk_age_ms)} ago)`;
}

// `daemon.children` and `daemon.scans` are {available, how} or
// {available: false, reason}.
function describeChildren(c) {
  if (!c) return "–";
  return c.available ? `followed (${c.how})` : `not followed: ${c.reason}`;
}

function describeScans(d) {
  const s = d.scans;
  if (!s) return "–";
  return s.available ? s.how + walkNote(d) : `unavailable: ${s.reason}`;
}

// c1m's own kernel programs: "inet_sock_set_state_btf 1,234 runs x 310 ns".
function describePrograms(d) {
  const stats = d.program_stats;
  if (!stats) return "–";
  if (!stats.available) return `not counted: ${stats.reason}`;
  const busy = (d.programs || []).filter((p) => p.runs > 0);
  if (busy.length === 0) return "no runs yet";
  return busy.map((p) => `${p.name} ${fmtCount(p.runs)} runs x ${Math.round(p.ns_per_run)} ns`).join(", ");
}

function renderHealth(r) {
  const d = r.daemon || {};
  const drops = Object.entries(r.drops || {});
  const lost = drops.reduce((s, [, n]) => s + n, 0);
  const facts = [
    ["attach mode", d.attach_mode || "–"],
    ["child processes", describeChildren(d.children)],
    ["socket scans", describeScans(d)],
    ["lost events", lost === 0 ? "none" : drops.filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ")],
    ["samples", d.samples != null ? `${d.samples} every ${d.interval_ms} ms` : "–"],
    ["own memory / CPU", d.rss_bytes != null ? `${fmtBytes(d.rss_bytes)} / ${d.cpu_seconds.toFixed(1)} s` : "–"],
    ["kernel memory (maps)", d.bpf_memory_bytes != null ? fmtBytes(d.bpf_memory_bytes) : "–"],
    ["kernel programs", describePrograms(d)],
  ];
  $("health").replaceChildren(...facts.map(([k, v]) => el("div", {}, el("b", {}, k), el("span", { class: k === "lost events" && lost ? "bad" : "" }, v))));
}

function renderSelftest(r) {
  const s = r.selftest;
  $("selftest").hidden = !s;
  if (!s) return;
  $("ramp-bar").style.width = `${Math.min(100, (100 * s.established) / s.target)}%`;
  const failures = Object.entries(s.failures || {}).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  $("ramp-text").textContent = `step ${s.step}/${s.steps}: ${fmtCount(s.established)} of ${fmtCount(s.target)} established, ` +
    `${fmtCount(s.rate_per_second)}/s, failures: ${failures} (${s.phase})`;
  // Each finished step's cost per connection.
  $("ramp-title").textContent = s.phase === "floor" ? "Ramp: the echo floor first" : s.phase === "selftest" ? "Self-test ramp" : "Ramp";
  $("ramp-costs").textContent = (s.costs || []).map((c) =>
    `${fmtCount(c.connections)}: kernel ${fmtBytes(c.kernel_bytes)}, userspace ${fmtBytes(c.user_bytes)}, ` +
    `${c.fds == null ? "–" : c.fds.toFixed(2)} fds per connection`).join(" · ");
}

function push(series, value) {
  series.push(value);
  if (series.length > HISTORY) series.shift();
}

function record(r) {
  const now = Date.now() / 1000;
  const s = r.connections.by_state || {};
  const est = s.ESTABLISHED || 0, tw = s.TIME_WAIT || 0;
  let acc = 0, clo = 0;
  if (previous) {
    const dt = Math.max(0.001, now - previous.t);
    acc = Math.max(0, r.connections.accepted_total - previous.accepted) / dt;
    clo = Math.max(0, r.connections.closed_total - previous.closed) / dt;
  }
  previous = { t: now, accepted: r.connections.accepted_total, closed: r.connections.closed_total };
  push(history.t, now); push(history.est, est); push(history.tw, tw);
  push(history.other, Math.max(0, r.connections.current - est - tw));
  push(history.acc, acc); push(history.clo, clo);
  push(history.twmax, r.time_wait.max_buckets); push(history.mem, r.target.memory_bytes);
  push(history.fds, r.cost_per_connection.open_fds);
}

function chart(id, series, data, axes) {
  const width = () => Math.max(300, $(id).clientWidth);
  if (!charts[id]) {
    const options = { width: width(), height: 220, series: [{}, ...series], axes: axes || [{}, { size: 70 }] };
    charts[id] = new uPlot(options, data, $(id));
    window.addEventListener("resize", () => charts[id].setSize({ width: width(), height: 220 }));
  } else {
    charts[id].setData(data);
  }
}

function renderCharts() {
  const t = history.t;
  chart("chart-states", [
    { label: "ESTABLISHED", stroke: "#2563eb", width: 2 },
    { label: "TIME_WAIT", stroke: "#7c3aed" },
    { label: "other states", stroke: "#a3a3a3" },
  ], [t, history.est, history.tw, history.other]);
  chart("chart-rates", [
    { label: "accepted/s", stroke: "#16a34a", width: 2 },
    { label: "closed/s", stroke: "#d92d20" },
  ], [t, history.acc, history.clo]);
  chart("chart-tw", [
    { label: "TIME_WAIT", stroke: "#7c3aed", width: 2 },
    { label: "tcp_max_tw_buckets", stroke: "#d92d20", dash: [6, 4] },
  ], [t, history.tw, history.twmax]);
  chart("chart-mem", [
    { label: "memory (bytes)", stroke: "#db2777", width: 2, scale: "bytes", value: (u, v) => fmtBytes(v) },
    { label: "open fds", stroke: "#0d9488", scale: "fds" },
  ], [t, history.mem, history.fds], [
    {},
    { scale: "bytes", size: 80, values: (u, vals) => vals.map(fmtBytes) },
    { scale: "fds", side: 1, size: 60 },
  ]);
}

function update(r) {
  record(r);
  renderHeadline(r);
  renderSelftest(r);
  renderLimits(r);
  renderCost(r);
  renderHealth(r);
  renderCharts();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function setLive(on) {
  const live = $("live");
  live.textContent = on ? "live" : "offline";
  live.className = "live " + (on ? "on" : "off");
}

function connect() {
  const events = new EventSource(withToken("/api/v1/events"));
  events.addEventListener("report", (e) => { setLive(true); update(JSON.parse(e.data)); });
  events.onerror = () => setLive(false);
}

for (const a of document.querySelectorAll("a[data-api]")) a.href = withToken(a.getAttribute("href"));
// The event stream starts with the latest report, then one per sample.
connect();
