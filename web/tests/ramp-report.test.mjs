// Browser test of the ramp's HTML report, as a user keeps it: a real
// `c1m-daemon ramp` of the echo server writes the report, headless
// Chromium (Debian's, driven by playwright-core) opens it from file://.
// Checks: the verdict shows, the limit ladder, steps and charts render, no
// console errors, no request but the file itself. Needs root (eBPF) and
// /usr/bin/chromium.
//
//   C1M_DAEMON=target/debug/c1m-daemon node web/tests/ramp-report.test.mjs

import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { statSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const daemon = process.env.C1M_DAEMON || "target/debug/c1m-daemon";
const report = path.resolve(process.env.C1M_RAMP_REPORT || "target/ramp-report.html");
const started = [];

function fail(message) {
  console.error(`ramp report test FAILED: ${message}`);
  for (const child of started) if (child.exitCode === null) child.kill("SIGTERM");
  process.exit(1);
}

function startEcho() {
  return new Promise((resolve, reject) => {
    const child = spawn(daemon, ["echo", "--listen", "127.0.0.1:0", "--workers", "1"], { stdio: ["ignore", "pipe", "inherit"] });
    started.push(child);
    const timer = setTimeout(() => reject(new Error("echo did not start within 30 s")), 30000);
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (/listening on/.test(line)) { clearTimeout(timer); resolve({ child, addr: line.split(/\s+/)[4] }); }
    });
  });
}

async function main() {
  const echo = await startEcho();
  const ramp = spawnSync(daemon, ["ramp", "--target", echo.addr, "--pid", String(echo.child.pid),
    "--connections", "300", "--steps", "3", "--no-floor", "--hold", "100ms", "--listen", "127.0.0.1:0",
    "--report", report], { encoding: "utf8", timeout: 120000 });
  echo.child.kill("SIGTERM");
  if (ramp.status !== 0) fail(`ramp exited ${ramp.status}: ${ramp.stdout}\n${ramp.stderr}`);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const errors = [];
  const requests = [];
  const url = pathToFileURL(report).href;
  const page = await browser.newPage({ viewport: { width: 1280, height: 1800 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (r) => { if (r.url() !== url) requests.push(r.url()); });
  await page.goto(url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 15000 });

  const verdict = await page.textContent("#verdict");
  if (!/^Reached 300 connections/.test(verdict)) fail(`verdict ${JSON.stringify(verdict)}`);
  const ladder = await page.locator("#ladder tbody tr").count();
  if (ladder < 2) fail(`only ${ladder} limits in the ladder`);
  const steps = await page.locator("#steps tbody tr").count();
  if (steps !== 3) fail(`${steps} step rows, wanted 3`);
  for (const id of ["chart-connections", "chart-cost"]) {
    if ((await page.locator(`#${id} canvas`).count()) < 1) fail(`chart ${id} did not render`);
  }
  if (!(await page.textContent("#environment")).includes("net.core.somaxconn")) fail("no sysctls in the environment");
  await page.screenshot({ path: report.replace(/\.html$/, ".png"), fullPage: true });
  if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
  if (requests.length) fail(`network requests: ${requests.join(", ")}`);
  await browser.close();
  console.log(`ramp report test passed: "${verdict}"; ${ladder} limits, ${steps} steps; ` +
    `${statSync(report).size} bytes; no request but ${url}`);
}

main().catch((e) => fail(e.stack || String(e)));
