// The dashboard page (see scheduler/dashboard.h): plain HTML + JS, no external resources.
#include "scheduler/dashboard.h"

namespace tidal::scheduler {

const std::string& DashboardHtml() {
  static const std::string* html = new std::string(R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tidal run</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#222}
 header{background:#14324a;color:#fff;padding:10px 18px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:18px;margin:0} header span{font-size:13px;opacity:.9}
 main{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px;padding:12px}
 .card{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
 .card h2{font-size:14px;margin:0 0 6px} .wide{grid-column:1/-1}
 canvas{width:100%!important} .chart{height:210px;position:relative}
 table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:3px 6px;border-bottom:1px solid #eee;text-align:left}
 .ok{color:#17803d} .bad{color:#b42318} .note{font-size:12px;color:#666}
 .legend span{display:inline-block;margin-right:14px;font-size:12px} .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
</style></head><body>
<header><h1>tidal · <span id="run">…</span></h1><span id="status">loading</span><span id="progress"></span></header>
<main>
 <div class="card"><h2>Reward and train accuracy</h2><div class="chart"><canvas id="c_reward" data-points="0"></canvas></div></div>
 <div class="card"><h2>Held-out accuracy (greedy eval)</h2><div class="chart"><canvas id="c_eval" data-points="0"></canvas></div></div>
 <div class="card"><h2>Throughput (tokens/s)</h2><div class="chart"><canvas id="c_tps" data-points="0"></canvas></div></div>
 <div class="card"><h2>Staleness (versions)</h2><div class="chart"><canvas id="c_stale" data-points="0"></canvas></div></div>
 <div class="card"><h2>Mismatch KL (rollout ‖ trainer)</h2><div class="chart"><canvas id="c_kl" data-points="0"></canvas></div></div>
 <div class="card"><h2>Weight sync time (s per version)</h2><div class="chart"><canvas id="c_sync" data-points="0"></canvas></div></div>
 <div class="card wide"><h2>Device tags over time</h2>
  <div class="legend"><span><i style="background:#2f80ed"></i>rollout</span><span><i style="background:#f2994a"></i>train</span><span><i style="background:#9b51e0"></i>switching</span><span><i style="background:#d9dde3"></i>idle</span></div>
  <canvas id="c_timeline" height="120" data-points="0"></canvas></div>
 <div class="card wide"><h2>Workers</h2><table id="workers"><tr><td class="note">waiting for data</td></tr></table>
  <p class="note" id="chartnote"></p></div>
</main>
<script src="chart.js"></script>
<script>
"use strict";
const COLORS = {rollout: "#2f80ed", train: "#f2994a", switching: "#9b51e0", idle: "#d9dde3"};
const charts = {};
function lineChart(id, series, ylabel) {
  const el = document.getElementById(id);
  const n = series.reduce((a, s) => a + s.data.length, 0);
  el.dataset.points = n;
  if (typeof Chart === "undefined") return;
  const datasets = series.map(s => ({label: s.label, data: s.data, borderColor: s.color, backgroundColor: s.color,
                                     pointRadius: s.data.length > 60 ? 0 : 2, borderWidth: 2, tension: 0.15, showLine: true}));
  if (charts[id]) { charts[id].data.datasets = datasets; charts[id].update("none"); return; }
  charts[id] = new Chart(el, {type: "scatter", data: {datasets},
    options: {animation: false, maintainAspectRatio: false, parsing: false,
              scales: {x: {title: {display: true, text: series[0].x || "step"}}, y: {title: {display: !!ylabel, text: ylabel || ""}}},
              plugins: {legend: {display: series.length > 1}}}});
}
function timeline(data) {
  const el = document.getElementById("c_timeline");
  const rows = {};
  for (const r of data.timeline) (rows[r.device] = rows[r.device] || []).push(r);
  const devices = Object.keys(rows).sort();
  const end = Math.max(1e-9, data.summary ? data.summary.wall_seconds : 0, data.live ? data.live.wall || 0 : 0,
                       ...data.timeline.map(r => r.t));
  const W = el.clientWidth || 800, rowH = 26, left = 70;
  el.width = W; el.height = Math.max(60, devices.length * rowH + 24);
  const g = el.getContext("2d");
  g.clearRect(0, 0, el.width, el.height); g.font = "12px system-ui"; g.textBaseline = "middle";
  let segments = 0;
  devices.forEach((d, i) => {
    const y = 4 + i * rowH, rs = rows[d];
    g.fillStyle = "#222"; g.fillText(d, 4, y + rowH / 2 - 2);
    rs.forEach((r, k) => {
      const t1 = k + 1 < rs.length ? rs[k + 1].t : end;
      const x0 = left + (W - left - 8) * r.t / end, x1 = left + (W - left - 8) * t1 / end;
      g.fillStyle = COLORS[r.state] || "#888"; g.fillRect(x0, y, Math.max(1, x1 - x0), rowH - 6); segments++;
    });
  });
  g.fillStyle = "#666"; g.fillText("0 s", left, el.height - 9); g.fillText(end.toFixed(0) + " s", W - 50, el.height - 9);
  el.dataset.points = segments;
}
function workers(data) {
  const t = document.getElementById("workers");
  let rows = [];
  if (data.live && data.live.workers) rows = data.live.workers;
  else if (data.summary) rows = data.summary.devices.map(d => ({device: d.device, home: d.home_tag, state: "exited",
      tag: "-", restarts: d.restarts, tag_moves: d.tag_moves, idle_fraction: d.idle_fraction}));
  if (!rows.length) return;
  let h = "<tr><th>device</th><th>home</th><th>state</th><th>tag now</th><th>in flight</th><th>restarts</th><th>tag moves</th><th>idle</th><th>last report</th><th>RSS</th></tr>";
  for (const w of rows) {
    const cls = w.state === "ready" || w.state === "exited" ? "ok" : "bad";
    h += `<tr><td>${w.device}</td><td>${w.home}</td><td class="${cls}">${w.state}</td><td>${w.tag}</td><td>${w.in_flight ?? "-"}</td>` +
         `<td>${w.restarts}</td><td>${w.tag_moves}</td><td>${(100 * (w.idle_fraction || 0)).toFixed(1)}%</td>` +
         `<td>${w.report_age_s == null ? "-" : w.report_age_s.toFixed(1) + " s ago"}</td>` +
         `<td>${w.rss_bytes ? (w.rss_bytes / 1048576).toFixed(0) + " MiB" : "-"}</td></tr>`;
  }
  t.innerHTML = h;
}
function render(data) {
  document.getElementById("run").textContent = data.run;
  const steps = data.events.filter(e => e.event === "step");
  const evals = data.events.filter(e => e.event === "eval");
  const pt = (e, y) => ({x: e.step, y: y});
  lineChart("c_reward", [{label: "reward", color: "#2f80ed", data: steps.map(e => pt(e, e.reward))},
                         {label: "train accuracy", color: "#27ae60", data: steps.map(e => pt(e, e.accuracy))}]);
  lineChart("c_eval", [{label: "held-out accuracy", color: "#eb5757", x: "policy version",
                        data: evals.map(e => ({x: e.version, y: e.accuracy}))}]);
  const rollout = [], train = [];
  steps.forEach((e, i) => {
    if (e.train_seconds > 0) train.push(pt(e, e.train_tokens / e.train_seconds));
    if (i > 0 && e.wall > steps[i - 1].wall) rollout.push(pt(e, (e.rollout_tokens_total - steps[i - 1].rollout_tokens_total) / (e.wall - steps[i - 1].wall)));
  });
  lineChart("c_tps", [{label: "rollout", color: "#2f80ed", data: rollout}, {label: "train", color: "#f2994a", data: train}]);
  lineChart("c_stale", [{label: "staleness", color: "#9b51e0", data: steps.map(e => pt(e, e.staleness))}]);
  lineChart("c_kl", [{label: "mismatch KL", color: "#b42318", data: steps.filter(e => e.stats && e.stats.mismatch_kl != null).map(e => pt(e, e.stats.mismatch_kl))}]);
  lineChart("c_sync", [{label: "gather + send (train rank 0)", color: "#14324a", data: steps.map(e => pt(e, e.publish_seconds))}]);
  timeline(data);
  workers(data);
  const last = steps.length ? steps[steps.length - 1] : null;
  document.getElementById("status").textContent = data.summary ? "finished" : (data.live ? "running" : "no live data");
  document.getElementById("progress").textContent = last ? `step ${last.step} · reward ${last.reward.toFixed(3)} · policy v${last.version}` : "warming up";
  if (typeof Chart === "undefined") document.getElementById("chartnote").textContent =
      "Chart.js is not available on the server (apt-get install libjs-chart.js); charts are empty.";
  document.body.dataset.loaded = "1";
  return !data.summary;
}
async function poll() {
  let again = true;
  try { again = render(await (await fetch("api/run.json", {cache: "no-store"})).json()); }
  catch (e) { document.getElementById("status").textContent = "cannot reach the run: " + e; }
  if (again) setTimeout(poll, 2000);
}
poll();
</script></body></html>
)HTML");
  return *html;
}

}  // namespace tidal::scheduler
