// Browser test of the c1m dashboard, as a user sees it: a real daemon
// (`c1m-daemon run`) watches a test echo server holding live connections
// that keep growing; headless Chromium (Debian's, driven by playwright-core)
// opens the page. Checks: the headline names the binding limit, the charts
// render with data, the numbers change between two updates, no console
// errors. Saves a screenshot. Needs root (eBPF) and /usr/bin/chromium.
//
//   C1M_DAEMON=target/debug/c1m-daemon node web/tests/dashboard.test.mjs

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const daemon = process.env.C1M_DAEMON || "target/debug/c1m-daemon";
const screenshot = process.env.C1M_SCREENSHOT || "target/dashboard.png";
const started = [];
const sockets = [];

function fail(message) {
  console.error(`dashboard test FAILED: ${message}`);
  cleanup();
  process.exit(1);
}

function cleanup() {
  for (const s of sockets) s.destroy();
  for (const child of started) if (child.exitCode === null) child.kill("SIGTERM");
}

/** Start a process and resolve with the first stdout line matching `pattern`. */
function startUntil(args, pattern, what) {
  return new Promise((resolve, reject) => {
    const child = spawn(daemon, args, { stdio: ["ignore", "pipe", "inherit"] });
    started.push(child);
    const timer = setTimeout(() => reject(new Error(`${what}: no ${pattern} within 30 s`)), 30000);
    child.on("exit", (code) => reject(new Error(`${what} exited (${code})`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (pattern.test(line)) { clearTimeout(timer); resolve({ child, line }); }
    });
  });
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.on("error", reject);
    sockets.push(s);
  });
}

async function main() {
  // The echo server's first line is the protocol's `listening` event
  // (c1m-daemon/src/loadgen/protocol.rs).
  const echo = await startUntil(["echo", "--json", "--listen", "127.0.0.1:0", "--workers", "1"],
    /"event":"listening"/, "echo");
  const port = Number(JSON.parse(echo.line).addr.split(":").pop());
  const run = await startUntil(
    ["run", "--json", "--listen", "127.0.0.1:0", "--interval", "500ms", "--pid", String(echo.child.pid)],
    /"event":"attached"/, "run");
  const api = JSON.parse(run.line).api.replace("/api/v1/report", "");

  // Live connections that keep growing while the page is open.
  for (let i = 0; i < 100; i++) await connect(port);
  const grow = setInterval(() => { for (let i = 0; i < 20; i++) connect(port).catch(() => {}); }, 250);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const errors = [];
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(api + "/");

  const updates = () => page.evaluate(() => Number(document.body.dataset.updates || 0));
  await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 2, null, { timeout: 30000 });
  const first = { now: await page.textContent("#now"), n: await updates() };
  await page.waitForFunction((n) => Number(document.body.dataset.updates || 0) >= n + 3, first.n, { timeout: 30000 });
  const second = { now: await page.textContent("#now") };
  clearInterval(grow);

  const report = await (await fetch(api + "/api/v1/report")).json();
  const binding = report.ceiling.binding.name;
  const verdict = await page.textContent("#verdict");
  if (!verdict.includes(binding)) fail(`headline ${JSON.stringify(verdict)} does not name the binding limit ${binding}`);
  if (!(await page.textContent("#remedy")).trim()) fail("no remedy shown");
  if (first.now === second.now) fail(`numbers did not change between updates: ${first.now}`);
  const limitRows = await page.locator("#limits .row").count();
  if (limitRows < 2) fail(`only ${limitRows} limit bars`);
  if ((await page.locator(`#limits .row[data-limit="${binding}"]`).count()) !== 1) fail(`no bar for ${binding}`);
  if ((await page.locator("#cost-bar div").count()) < 3) fail("cost bar has fewer than 3 parts");
  for (const id of ["chart-states", "chart-rates", "chart-tw", "chart-mem"]) {
    const canvases = await page.locator(`#${id} canvas`).count();
    if (canvases < 1) fail(`chart ${id} did not render`);
  }
  const points = await page.evaluate(() => document.querySelectorAll(".u-legend .u-value").length);
  if (points < 4) fail("chart legends empty");
  if (!(await page.textContent("#health")).includes("inet_sock_set_state")) fail("attach mode not shown");
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
  await browser.close();
  console.log(`dashboard test passed: headline names ${binding}; ${limitRows} limit bars; ` +
    `"${first.now}" -> "${second.now}"; screenshot ${path.resolve(screenshot)}`);
  cleanup();
}

main().catch((e) => fail(e.stack || String(e)));
