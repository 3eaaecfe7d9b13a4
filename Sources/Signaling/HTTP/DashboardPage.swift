/// The live dashboard at /dashboard: plain HTML and JavaScript, no build step, no external resources.
/// It reads /dashboard/events (server-sent events, the /api/stats JSON once a second; the `token` query
/// parameter, if any, is passed on) and draws rooms and peers, allocations with their user and relayed
/// bandwidth, a bandwidth-over-time graph and the error counters.
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>webrtc-server dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 12px 20px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  #status { font-size: 13px; opacity: .8; }
  main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  h2 { font-size: 15px; margin: 0 0 8px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; grid-column: 1 / -1; }
  .card { background: #fff; border-radius: 8px; padding: 10px 16px; min-width: 120px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  .card b { display: block; font-size: 24px; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e6e8eb; }
  canvas { width: 100%; height: 200px; }
  .legend span { margin-right: 12px; }
  .empty { color: #888; }
</style>
</head>
<body>
<header><h1>webrtc-server</h1><span id="status">connecting…</span></header>
<main>
  <div class="cards">
    <div class="card">connections<b id="connections">–</b></div>
    <div class="card">rooms<b id="rooms">–</b></div>
    <div class="card">peers<b id="peers">–</b></div>
    <div class="card">allocations<b id="allocations">–</b></div>
    <div class="card">relayed<b id="rate">–</b></div>
  </div>
  <section style="grid-column: 1 / -1">
    <h2>Relayed bandwidth (last 5 minutes)</h2>
    <canvas id="graph" width="1200" height="200"></canvas>
    <div class="legend"><span style="color:#2b6cb0">■ to peers</span><span style="color:#c05621">■ to clients</span></div>
  </section>
  <section><h2>Allocations</h2><table id="alloc"></table></section>
  <section><h2>Rooms and peers</h2><table id="roomtable"></table></section>
  <section><h2>Errors and throttles</h2><table id="errors"></table></section>
  <section id="clustersection" hidden><h2>Cluster instances</h2><table id="cluster"></table></section>
</main>
<script>
"use strict";
const history = [];            // {t, toPeer, toClient} in bytes/s
let previous = null;           // the last sample, for rates
const perAllocation = new Map();
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const rate = (bps) => bps >= 1e6 ? (bps * 8 / 1e6).toFixed(2) + " Mbit/s" : (bps * 8 / 1e3).toFixed(1) + " kbit/s";

function table(el, head, rows) {
  el.innerHTML = "<tr>" + head.map((h) => "<th>" + esc(h) + "</th>").join("") + "</tr>" +
    (rows.length ? rows.map((r) => "<tr>" + r.map((c) => "<td>" + esc(c) + "</td>").join("") + "</tr>").join("")
                 : '<tr><td class="empty" colspan="' + head.length + '">none</td></tr>');
}

function draw() {
  const c = $("graph"), g = c.getContext("2d");
  g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
  g.strokeStyle = "#e6e8eb"; g.lineWidth = 1;
  for (let y = 0; y <= 4; y++) { g.beginPath(); g.moveTo(0, y * c.height / 4); g.lineTo(c.width, y * c.height / 4); g.stroke(); }
  const max = Math.max(1000, ...history.map((h) => Math.max(h.toPeer, h.toClient)));
  g.fillStyle = "#555"; g.font = "12px sans-serif"; g.fillText(rate(max), 4, 12);
  for (const [key, color] of [["toPeer", "#2b6cb0"], ["toClient", "#c05621"]]) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    history.forEach((h, i) => {
      const x = c.width - (history.length - 1 - i) * (c.width / 300), y = c.height - h[key] / max * (c.height - 16);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

function update(s) {
  const sig = s.signaling, turn = s.turn || { counters: {}, allocations: [], errors: {} };
  $("connections").textContent = sig.connections;
  $("rooms").textContent = sig.rooms;
  $("peers").textContent = sig.peers;
  $("allocations").textContent = turn.allocations.length;
  const c = turn.counters || {};
  if (previous) {
    const dt = Math.max(1, s.time - previous.time);
    const sample = { t: s.time, toPeer: ((c.bytes_to_peer || 0) - (previous.c.bytes_to_peer || 0)) / dt,
                     toClient: ((c.bytes_to_client || 0) - (previous.c.bytes_to_client || 0)) / dt };
    history.push(sample);
    if (history.length > 300) history.shift();
    $("rate").textContent = rate(sample.toPeer + sample.toClient);
  }
  previous = { time: s.time, c };
  const seen = new Map();
  table($("alloc"), ["user", "client", "transport", "relayed", "permissions", "channels", "bandwidth"],
    turn.allocations.map((a) => {
      const key = a.client + " " + a.relayed, bytes = a.bytesToPeer + a.bytesToClient, last = perAllocation.get(key);
      seen.set(key, { bytes, time: s.time });
      const bw = last && s.time > last.time ? rate((bytes - last.bytes) / (s.time - last.time)) : "…";
      return [a.username, a.client, a.transport, a.relayed, a.permissions, a.channels, bw];
    }));
  perAllocation.clear(); seen.forEach((v, k) => perAllocation.set(k, v));
  const rows = [];
  for (const r of s.rooms) for (const p of r.peers) rows.push([r.room, p.username, p.peer_id]);
  table($("roomtable"), ["room", "user", "peer id"], rows);
  const errors = Object.entries(turn.errors || {}).map(([code, n]) => ["TURN error " + code, n]);
  for (const k of ["auth_failures", "auth_blocked", "rate_limited", "bandwidth_dropped", "malformed_dropped",
                   "unroutable_dropped", "peer_policy_rejections", "quota_rejections", "send_failed"]) errors.push(["TURN " + k.replace(/_/g, " "), c[k] || 0]);
  for (const k of ["auth_failures", "auth_blocked", "auth_timeouts", "bad_messages", "rejected_connections", "slow_consumers", "hook_failures"])
    errors.push(["signaling " + k.replace(/_/g, " "), sig[k]]);
  table($("errors"), ["counter", "count"], errors);
  if (s.cluster) {
    $("clustersection").hidden = false;
    table($("cluster"), ["instance", "address", "TURN", "peers", "allocations", "last seen"],
      s.cluster.instances.map((i) => [i.id + (i.this ? " (this one)" : ""), i.address, i.turn || "", i.peers, i.allocations,
                                      i.this ? (s.cluster.linked ? "linked" : "NATS link down") : i.last_seen.toFixed(1) + " s ago"]));
  }
  draw();
  $("status").textContent = "live · " + new Date(s.time * 1000).toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

const token = new URLSearchParams(location.search).get("token");
const source = new EventSource("dashboard/events" + (token ? "?token=" + encodeURIComponent(token) : ""));
source.onmessage = (e) => update(JSON.parse(e.data));
source.onerror = () => { $("status").textContent = "disconnected, retrying…"; };
draw();
</script>
</body>
</html>
"""#
}
