// Browser test of the host overview, as a user sees it: two test echo
// servers hold connections this node process dialled; a real daemon runs
// without a target (`c1m-daemon run`, the default of `cargo xtask run`)
// and serves the overview; headless Chromium (Debian's, driven by
// playwright-core) opens it. Checks: both echo servers have a row with
// their connection count, listening port and the command that watches
// them; the page refreshes; no console errors. Saves a screenshot. Needs
// root (eBPF) and /usr/bin/chromium.
//
//   C1M_DAEMON=target/debug/c1m-daemon node web/tests/overview.test.mjs

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const daemon = process.env.C1M_DAEMON || "target/debug/c1m-daemon";
const screenshot = process.env.C1M_OVERVIEW_SCREENSHOT || "target/overview.png";
const started = [];
const sockets = [];

function fail(message) {
  console.error(`overview test FAILED: ${message}`);
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

async function echoServer() {
  // The echo server's first line is the protocol's `listening` event
  // (c1m-daemon/src/loadgen/protocol.rs).
  const echo = await startUntil(["echo", "--json", "--listen", "127.0.0.1:0", "--workers", "1"],
    /"event":"listening"/, "echo");
  const ready = JSON.parse(echo.line);
  return { pid: ready.pid, port: Number(ready.addr.split(":").pop()) };
}

async function main() {
  const echoes = [await echoServer(), await echoServer()];
  const counts = [12, 7];
  for (const [i, e] of echoes.entries()) for (let n = 0; n < counts[i]; n++) await connect(e.port);
  const run = await startUntil(["run", "--listen", "127.0.0.1:0", "--interval", "500ms"],
    /http:\/\//, "run without --pid");
  const base = run.line.match(/http:\/\/[^/ ]+/)[0];

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const errors = [];
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 2, null, { timeout: 30000 });

  for (const [i, e] of echoes.entries()) {
    const row = page.locator(`#processes tr[data-pid="${e.pid}"]`);
    if ((await row.count()) !== 1) fail(`no row for echo pid ${e.pid}`);
    const text = await row.textContent();
    const cells = await row.locator("td").allTextContents();
    if (cells[2] !== String(counts[i])) fail(`echo ${e.pid}: ${cells[2]} connections, want ${counts[i]}: ${text}`);
    if (!cells[3].includes(`ESTABLISHED ${counts[i]}`)) fail(`echo ${e.pid}: states ${cells[3]}`);
    if (!cells[4].includes(`:${e.port}`)) fail(`echo ${e.pid}: listening ${cells[4]}, want :${e.port}`);
    if (!text.includes(`c1m-daemon run --pid ${e.pid}`)) fail(`echo ${e.pid}: no watch command in ${text}`);
  }
  if (!(await page.textContent("#summary")).includes("TCP connections")) fail("no summary");
  const rows = await page.locator("#processes tbody tr").count();
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
  await browser.close();
  console.log(`overview test passed: ${rows} rows, both echo servers (pids ${echoes.map((e) => e.pid).join(", ")}) ` +
    `with ${counts.join(" and ")} connections; screenshot ${path.resolve(screenshot)}`);
  cleanup();
}

main().catch((e) => fail(e.stack || String(e)));
