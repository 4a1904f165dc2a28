// inferd dashboard: reads /dashboard/state every second and draws it. Counters in the state
// are cumulative; rates and percentiles are the difference between two reads.
"use strict";

const REFRESH_MS = 1000;
const KEY = "inferd-dashboard-key";
let previous = null;

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: "Bearer " + key } : {};
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attrs || {})) tr.dataset[name] = value;
  for (const cell of cells) tr.appendChild(cell);
  return tr;
}

function fixed(value, digits) {
  return value === null || value === undefined || !isFinite(value) ? "–" : value.toFixed(digits);
}

// The q-quantile (0..1) of a histogram: bucket upper bounds (the last bucket, +Inf, has
// none) and per-bucket counts, linear inside the bucket.
function quantile(q, bounds, counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  let rank = q * total, low = 0;
  for (let i = 0; i < counts.length; i++) {
    const high = i < bounds.length ? bounds[i] : Infinity;
    if (rank <= counts[i]) {
      if (!isFinite(high)) return low;
      return low + (high - low) * (counts[i] ? rank / counts[i] : 0);
    }
    rank -= counts[i];
    low = high;
  }
  return low;
}

const REJECTED = ["resource_exhausted", "deadline_exceeded", "unavailable", "payload_too_large"];

function sum(values) {
  return Object.values(values || {}).reduce((a, b) => a + b, 0);
}

function liveRows(state) {
  const before = new Map();
  if (previous && previous.live) {
    for (const v of previous.live.versions) before.set(v.model + "/" + v.version, v);
  }
  const seconds = previous ? Math.max(state.time - previous.time, 1e-3) : null;
  const body = document.querySelector("#live tbody");
  body.replaceChildren();
  for (const v of state.live.versions) {
    const old = before.get(v.model + "/" + v.version);
    const total = sum(v.requests);
    let rps = null, p50 = null, p99 = null, batch = null, rejected = null;
    if (old && seconds) {
      rps = (total - sum(old.requests)) / seconds;
      const delta = v.latency.map((c, i) => c - (old.latency[i] || 0));
      p50 = quantile(0.5, state.latency_buckets, delta);
      p99 = quantile(0.99, state.latency_buckets, delta);
      const batches = v.batch.count - old.batch.count;
      batch = batches > 0 ? (v.batch.sum - old.batch.sum) / batches : null;
      rejected = REJECTED.reduce(
        (n, s) => n + ((v.requests[s] || 0) - (old.requests[s] || 0)), 0) / seconds;
    }
    body.appendChild(row([
      el("td", v.model), el("td", v.version),
      el("td", fixed(rps, 1), "num rps"),
      el("td", p50 === null ? "–" : fixed(p50 * 1000, 2), "num p50"),
      el("td", p99 === null ? "–" : fixed(p99 * 1000, 2), "num p99"),
      el("td", fixed(batch, 1), "num batch"),
      el("td", fixed(v.queue_depth, 0), "num queue"),
      el("td", fixed(rejected, 1), "num rejections" + (rejected > 0 ? " bad" : "")),
      el("td", fixed(total, 0), "num total"),
    ], { model: v.model, version: v.version }));
  }
}

function percent(part, whole) {
  return whole > 0 ? (100 * part / whole).toFixed(1) + " %" : "–";
}

function shadowText(counts) {
  const parts = [];
  for (const [version, c] of Object.entries(counts || {})) {
    const compared = (c.agree || 0) + (c.disagree || 0);
    parts.push("v" + version + ": " + percent(c.agree || 0, compared) + " of " + compared);
  }
  return parts.join(", ") || "–";
}

function windowText(role, figures) {
  if (!figures) return "";
  const rate = figures.error_rate === undefined ? "" : ", " + (100 * figures.error_rate).toFixed(1) + " % errors";
  const p99 = figures.p99_ms === undefined || figures.p99_ms === null ? "" : ", p99 " + figures.p99_ms.toFixed(1) + " ms";
  return role + " " + figures.requests + " req" + rate + p99;
}

function rolloutText(rollout) {
  if (!rollout) return "–";
  const w = rollout.window || {};
  const guards = [windowText("canary", w.canary), windowText("stable", w.stable)].filter(Boolean);
  return rollout.state + ": " + rollout.canary + " step " + rollout.step + " at " +
    rollout.percent + " %" + (guards.length ? "; " + guards.join("; ") : "");
}

function modelRows(state) {
  const live = (state.live && state.live.models) || {};
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  const control = state.parts.includes("control");
  for (const m of state.models) {
    const counters = live[m.name] || { cache: {}, shadow: {} };
    const hits = counters.cache.hit || 0;
    const labels = Object.entries(m.labels).map(([l, v]) => l + "→" + v).join(", ");
    const traffic = control && m.traffic
      ? Object.entries(m.traffic).map(([v, w]) => v + ": " + w).join(", ")
      : (control ? "latest" : "(admin)");
    m.versions.forEach((v, i) => {
      const stateClass = v.state === "READY" ? "ok" : (v.state === "FAILED" ? "bad" : "warn");
      body.appendChild(row([
        el("td", i === 0 ? m.name : ""),
        el("td", v.version || "–"),
        el("td", v.state + (v.reason ? " (" + v.reason + ")" : ""), "state " + stateClass),
        el("td", i === 0 ? labels || "–" : ""),
        el("td", i === 0 ? traffic : ""),
        el("td", i === 0 ? (state.live ? shadowText(counters.shadow) : "(metrics)") : ""),
        el("td", i === 0 ? (control ? rolloutText(m.rollout) : "(admin)") : ""),
        el("td", i === 0 ? (state.live ? percent(hits, sum(counters.cache)) : "(metrics)") : ""),
      ], { model: m.name, version: v.version }));
    });
  }
}

function show(state) {
  document.getElementById("key-form").hidden = true;
  document.getElementById("content").hidden = false;
  document.getElementById("server").textContent =
    state.server.name + " " + state.server.version + (state.server.ready ? " · ready" : " · not ready");
  document.getElementById("status").textContent =
    "updated " + new Date(state.time * 1000).toLocaleTimeString();
  modelRows(state);
  document.getElementById("live-section").hidden = !state.live;
  if (state.live) liveRows(state);
  const missing = ["live", "control"].filter((p) => !state.parts.includes(p));
  document.getElementById("hidden-parts").textContent = missing.length
    ? "Not shown to this key: " + missing.map((p) => p === "live" ? "live figures (needs what /metrics needs)" : "splits, shadows and rollouts (admin)").join("; ")
    : "";
  previous = state;
}

function askForKey(message) {
  previous = null;
  document.getElementById("content").hidden = true;
  document.querySelector("#models tbody").replaceChildren();
  document.querySelector("#live tbody").replaceChildren();
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-reason").textContent = message;
  document.getElementById("status").textContent = "no access";
}

async function refresh() {
  try {
    const answer = await fetch("/dashboard/state", { headers: headers(), cache: "no-store" });
    if (answer.status === 401 || answer.status === 403) {
      const doc = await answer.json().catch(() => ({}));
      askForKey(doc.error || "This server needs an API key to show its state.");
    } else if (!answer.ok) {
      document.getElementById("status").textContent = "server answered " + answer.status;
    } else {
      show(await answer.json());
    }
  } catch (error) {
    document.getElementById("status").textContent = "server unreachable";
  }
  setTimeout(refresh, REFRESH_MS);
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
  previous = null;
});

refresh();
