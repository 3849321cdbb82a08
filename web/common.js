// Helpers both pages (the dashboard, app.js, and the host overview,
// overview.js) use: loaded before either. The ramp's HTML report keeps its
// own copy (it is one self-contained file).
"use strict";

const $ = (id) => document.getElementById(id);
// A daemon serving beyond loopback wants its token: the page passes on the
// one in its own URL (/?token=...).
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => (token ? `${url}?token=${encodeURIComponent(token)}` : url);
const fmtCount = (n) => (n == null ? "–" : n >= 1e6 ? (n / 1e6).toFixed(2) + "M" : Math.round(n).toLocaleString("en-US"));
function fmtBytes(b) {
  if (b == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? Math.round(b) : b.toFixed(b < 10 ? 2 : 1)) + " " + units[i];
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") e.style.cssText = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
