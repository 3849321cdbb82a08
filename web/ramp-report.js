// The self-contained ramp report (`c1m-daemon ramp --report FILE.html`):
// reads the ramp's JSON from script#ramp-data and draws the verdict, the
// limit ladder, cost per connection per step, connections and failures
// over time, the echo floor beside the server and the environment. No
// network: everything it needs is inline in the page.
"use strict";

(function () {
  const r = JSON.parse(document.getElementById("ramp-data").textContent);
  const root = document.getElementById("report");

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const fmtCount = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  function fmtBytes(b) {
    if (b == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = Math.max(0, b);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }
  const fmtNum = (v, d) => (v == null ? "–" : Number(v).toFixed(d));
  const fmtUs = (us) => (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us} µs`);
  function card(title, ...children) {
    const c = el("section", { class: "card" }, el("h2", {}, title), ...children);
    root.append(c);
    return c;
  }
  function table(head, rows, attrs) {
    return el("table", attrs || {},
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((row) => el("tr", row.attrs || {}, ...row.cells.map((c) => el("td", {}, c))))));
  }
  function userCost(c) {
    if (!c) return null;
    if (c.user_marginal_bytes != null && c.user_marginal_r2 != null && c.user_marginal_r2 >= 0.9) return Math.max(0, c.user_marginal_bytes);
    return c.user_bytes;
  }

  // The verdict.
  const verdictLines = r.verdict.split("\n");
  const headline = el("section", { class: "card headline" },
    el("div", { class: "label" }, r.stop ? "Stopped by a limit" : "Reached"),
    el("h1", { id: "verdict" }, verdictLines[0]),
    el("div", { class: "muted" }, `${r.connection}; ${fmtCount(r.reached)} of ${fmtCount(r.requested)} connections in ${r.seconds.toFixed(0)} s; started ${r.started_at}; c1m ${r.c1m_version}`));
  if (r.stop) {
    const s = r.stop;
    headline.append(el("div", { id: "stop" }, el("b", {}, "why: "), s.reason,
      s.limit ? el("span", {}, " — limit ", el("code", {}, s.limit), s.source ? ` (set at ${s.source})` : "") : null));
    headline.append(el("ul", { class: "evidence" }, ...s.evidence.map((e) => el("li", {}, e))));
  }
  headline.append(el("pre", { class: "verdict-text" }, verdictLines.slice(1).join("\n")));
  root.append(headline);

  // Your server beside the echo floor.
  const c = r.cost_per_connection;
  if (c || r.floor) {
    const f = r.floor;
    const rows = [
      { cells: ["your server", c ? fmtBytes(c.kernel_bytes) : "–", c ? fmtBytes(userCost(c)) : "–", c ? fmtNum(c.fds_marginal ?? c.fds, 2) : "–"] },
    ];
    if (f) rows.push({ cells: ["echo floor", fmtBytes(f.kernel_bytes), fmtBytes(f.user_bytes), fmtNum(f.fds, 2)] });
    const note = f && c && userCost(c) != null && f.user_bytes != null
      ? `Your server adds ${fmtBytes(userCost(c) - f.user_bytes)} per connection in userspace over the echo floor (${f.source}).`
      : (f ? `Floor: ${f.source}.` : "No floor (--no-floor).");
    card("Cost per connection, beside the echo floor",
      table(["", "kernel", "userspace", "fds"], rows, { id: "floor" }),
      el("p", { class: "muted" }, note,
        c && c.user_marginal_r2 != null ? ` Userspace is the marginal figure (r2 ${c.user_marginal_r2.toFixed(2)}) when r2 >= 0.9, else the average.` : ""));
  }
  if (r.not_measured) card("Not measured", el("p", { id: "not-measured" }, r.not_measured));

  // The limit ladder.
  if (r.ceiling) {
    const rows = r.ceiling.limits.map((l) => ({
      attrs: { class: l.exceeded ? "hit" : "", "data-limit": l.name },
      cells: [l.kind, el("code", {}, l.name), l.max_connections == null ? "not a count" : fmtCount(l.max_connections),
              l.source, l.exceeded ? "BEING HIT" : "", l.remedy],
    }));
    card("Limits, tightest first, and where each is set",
      el("p", { class: "muted" }, r.ceiling.verdict),
      table(["kind", "limit", "connections it allows", "set at", "", "to raise it"], rows, { id: "ladder" }));
  }

  // Steps: costs and failures.
  const classes = [...new Set(r.steps.flatMap((s) => Object.keys(s.failures)))];
  card("Steps",
    table(["connections", "at", "kernel / conn", "userspace / conn", "fds / conn", "failures"],
      r.steps.map((s) => ({ cells: [fmtCount(s.connections), `${s.seconds.toFixed(1)} s`, fmtBytes(s.kernel_bytes),
        fmtBytes(s.user_bytes), fmtNum(s.fds, 2),
        Object.entries(s.failures).map(([k, n]) => `${k} ${n}`).join(", ") || "none"] })), { id: "steps" }),
    el("p", { class: "muted" }, "Userspace and fds per step: the target's own memory (Pss_Anon + Pss_Shmem) and open fds over those before the ramp, divided by the connections open."));
  const charts = el("section", { class: "grid" });
  root.append(charts);
  function chart(title, id, series, data, axes) {
    const box = el("div", { class: "chart", id });
    charts.append(el("div", { class: "card" }, el("h2", {}, title), box));
    if (data[0].length === 0) return;
    // Drawn once every card of the grid is in place (a lone card spans it).
    pending.push(() => {
    const width = Math.max(300, Math.floor(box.getBoundingClientRect().width) - 4);
    const x = { label: "seconds", value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} s`) };
    new uPlot({ width, height: 220, scales: { x: { time: false } }, series: [x, ...series],
                axes: axes || [{}, { size: 70 }] }, data, box);
    });
  }
  const pending = [];
  const t = [0, ...r.steps.map((s) => s.seconds)];
  chart("Connections and failures over time", "chart-connections", [
    { label: "connections open", stroke: "#2563eb", width: 2 },
    ...classes.map((k, i) => ({ label: `${k} (failures)`, stroke: ["#d92d20", "#f59e0b", "#7c3aed", "#0d9488"][i % 4], scale: "f" })),
  ], [t, [0, ...r.steps.map((s) => s.connections)], ...classes.map((k) => [0, ...r.steps.map((s) => s.failures[k] || 0)])],
  [{}, { size: 70 }, { scale: "f", side: 1, size: 50 }]);
  chart("Cost per connection at each step", "chart-cost", [
    { label: "kernel bytes", stroke: "#2563eb", width: 2 },
    { label: "userspace bytes", stroke: "#db2777", width: 2 },
  ], [t, [null, ...r.steps.map((s) => s.kernel_bytes)], [null, ...r.steps.map((s) => s.user_bytes)]],
  [{}, { size: 80, values: (u, vals) => vals.map(fmtBytes) }]);

  for (const draw of pending) draw();

  // The client's view.
  const l = r.connect_latency_us;
  card("What the client saw",
    el("p", {}, l ? `Time to open a connection${r.connection.startsWith("idle") ? "" : " and get its answer"}: p50 ${fmtUs(l.p50)}, p90 ${fmtUs(l.p90)}, p99 ${fmtUs(l.p99)}.` : "No connection opened."),
    el("p", {}, "Failures by class: " + (Object.entries(r.failures).map(([k, n]) => `${k} ${n}`).join(", ") || "none") +
      (Object.keys(r.errnos).length ? ` (by errno: ${Object.entries(r.errnos).map(([k, n]) => `${k} ${n}`).join(", ")})` : "")));

  // The box.
  const e = r.environment;
  card("Environment",
    table(["", ""], [
      { cells: ["kernel", e.kernel] }, { cells: ["CPUs", e.cpus] }, { cells: ["memory", fmtBytes(e.memory_bytes)] },
      { cells: ["target", `${r.target.addr}${r.target.pid ? ` (pid ${r.target.pid}${r.target.name ? ", " + r.target.name : ""})` : ""}`] },
      ...Object.entries(e.sysctls).map(([k, v]) => ({ cells: [k, v] })),
      ...Object.entries(e.limits).map(([k, v]) => ({ cells: [k, v] })),
    ], { id: "environment" }));
  document.body.dataset.ready = "1";
})();
