// c1m host overview: reads only the public JSON API (/api/v1/overview,
// the document `c1m-daemon top --json` prints), once a second.
"use strict";

const REFRESH_MS = 1000;

const states = (byState) => Object.entries(byState || {})
  .filter(([name, n]) => name !== "TIME_WAIT" && n > 0)
  .map(([name, n]) => `${name} ${fmtCount(n)}`).join(", ") || "–";

function processName(p) {
  const exe = p.exe && !p.exe.startsWith(p.comm) && !p.comm.startsWith(p.exe) ? ` (${p.exe})` : "";
  return p.comm + exe;
}

function nofile(p) {
  if (p.nofile == null) return `${fmtCount(p.fds)} / ?`;
  return `${fmtCount(p.fds)} / ${p.nofile >= Number.MAX_SAFE_INTEGER ? "unlimited" : fmtCount(p.nofile)}`;
}

function row(p) {
  const watch = el("td", { class: "watch" });
  // The command to run, and a button that copies it.
  const command = el("code", {}, p.watch);
  const copy = el("button", { type: "button", title: "copy the command" }, "copy");
  copy.addEventListener("click", () => {
    if (navigator.clipboard) navigator.clipboard.writeText(p.watch).catch(() => {});
  });
  watch.append(command, " ", copy);
  const limit = p.nearest_limit;
  const tight = limit && limit.value > 0 && limit.headroom / limit.value < 0.1;
  return el("tr", { "data-pid": String(p.pid), class: tight ? "tight" : "" },
    el("td", { class: "num" }, String(p.pid)),
    el("td", {}, processName(p)),
    el("td", { class: "num" }, fmtCount(p.connections)),
    el("td", {}, states(p.by_state)),
    el("td", {}, p.listening.length ? p.listening.map((port) => `:${port}`).join(" ") : "–"),
    el("td", { class: "num" }, fmtCount(p.time_wait)),
    el("td", { class: "num" }, fmtBytes(p.kernel_buffer_bytes)),
    el("td", { class: "num" }, nofile(p)),
    el("td", { title: limit ? limit.source : "" }, limit ? `${limit.name}: ${fmtCount(limit.headroom)} more` : "–"),
    el("td", { class: "cgroup" }, p.cgroup || "–"),
    watch);
}

function render(o) {
  const t = o.totals;
  $("target").textContent = `host overview, network namespace ${o.netns ?? "?"}`;
  $("summary").textContent = `${fmtCount(t.processes)} processes hold ${fmtCount(t.connections)} TCP connections`;
  const attributed = o.processes.reduce((sum, p) => sum + p.time_wait, 0);
  $("totals").textContent = `TIME_WAIT ${fmtCount(t.time_wait)} (${fmtCount(attributed)} on listening ports, ` +
    `${fmtCount(o.host.time_wait)} the host's) · ${fmtCount(t.sockets)} sockets walked`;
  const body = $("processes").tBodies[0];
  const rows = o.processes.map(row);
  rows.push(el("tr", { class: "host", "data-pid": "host" },
    el("td", {}, "–"), el("td", {}, "(host: no owner, no listener)"), el("td", {}, ""),
    el("td", {}, states(o.host.by_state)), el("td", {}, ""), el("td", { class: "num" }, fmtCount(o.host.time_wait)),
    el("td", {}), el("td", {}), el("td", {}), el("td", {}), el("td", {})));
  body.replaceChildren(...rows);
  $("attribution").textContent = o.attribution;
  $("other").textContent = o.other_namespaces.sockets
    ? `${fmtCount(o.other_namespaces.sockets)} sockets of ${o.other_namespaces.processes} processes in other network namespaces are not shown.`
    : "";
  const d = o.daemon;
  $("health").textContent = `c1m: refresh ${d.refresh_ms.toFixed(1)} ms · CPU ${d.cpu_seconds.toFixed(2)} s · memory ${fmtBytes(d.rss_bytes)}`;
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function refresh() {
  try {
    const response = await fetch(withToken("/api/v1/overview"), { cache: "no-store" });
    if (response.status === 503) {
      $("live").textContent = "waiting";
    } else if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    } else {
      render(await response.json());
      $("live").textContent = "live";
      $("live").className = "live on";
    }
  } catch (e) {
    $("live").textContent = "offline";
    $("live").className = "live off";
  }
  setTimeout(refresh, REFRESH_MS);
}

refresh();
