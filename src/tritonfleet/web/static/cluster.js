// Cluster: server-sent snapshots of the nodes, each drawn as a card with three small charts.
"use strict";

const $ = (id) => document.getElementById(id);
const WINDOW_S = 120;
const CHARTS = [["rps", "requests/s", (v) => fmt(v, 3)], ["latency_ms", "latency ms", (v) => fmt(v, 3)], ["in_flight", "in flight", (v) => fmt(v)]];
const LABELS = { up: "up", starting: "starting", draining: "draining", unhealthy: "unhealthy", down: "down" };

function pill(target, up) {
  target.textContent = up === null ? "unknown" : up ? "up" : "down";
  target.className = "pill " + (up === null ? "" : up ? "up" : "down");
}

// A sparkline of [seconds before now, value] points as SVG: a polyline per unbroken run (a null
// value is a gap), over the history there is (up to WINDOW_S), scaled to its own peak.
function sparkline(points) {
  const width = 100, height = 40;
  const values = points.map(([, v]) => v).filter((v) => v !== null);
  const peak = Math.max(...values, 0);
  const top = peak > 0 ? peak * 1.15 : 1;
  const span = Math.min(Math.max(points.length ? -points[0][0] : 0, 10), WINDOW_S);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs) => {
    const node = document.createElementNS(svg.namespaceURI, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    svg.append(node);
  };
  let run = [];
  const flush = () => {
    if (run.length === 1) run.push([run[0][0] + 0.8, run[0][1]]);  // a lone point: a short dash
    if (run.length > 1) {
      const line = run.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
      add("polygon", { points: `${run[0][0].toFixed(1)},${height} ${line} ${run[run.length - 1][0].toFixed(1)},${height}`, fill: "#dbe4ff" });
      add("polyline", { points: line, fill: "none", stroke: "#3b5bdb", "stroke-width": "1.5", "vector-effect": "non-scaling-stroke" });
    }
    run = [];
  };
  for (const [ago, value] of points) {
    if (value === null) { flush(); continue; }
    run.push([Math.max(((ago + span) / span) * width, 0), height - (value / top) * (height - 2) - 1]);
  }
  flush();
  return [svg, peak];
}

function card(node) {
  const charts = CHARTS.map(([key, title, show]) => {
    const series = node.series[key];
    const [svg, peak] = sparkline(series);
    return h("div", { class: "chart" }, h("div", { class: "title" }, title), svg,
      h("div", { class: "value", "data-metric": key }, show(node[key]), h("span", { class: "muted" }, ` · peak ${show(peak)}`)));
  });
  const reason = !node.listed ? " (dropped by the health checker)" : !node.reachable ? " (not answering)" : "";
  return h("div", { class: "panel node", "data-node-id": node.node_id, "data-status": node.status },
    h("h3", {}, h("span", { class: "dot" }), node.node_id, h("span", { class: "pill status" }, LABELS[node.status] + reason)),
    h("div", {}, "models: ", node.models.length ? node.models.join(", ") : "none ready"),
    h("div", { class: "charts" }, charts));
}

function render(snapshot) {
  pill($("gateway"), snapshot.gateway_up);
  pill($("health"), snapshot.health_checker_up);
  const up = snapshot.nodes.filter((n) => n.status === "up").length;
  $("count").textContent = `${up} / ${snapshot.nodes.length}`;
  $("nodes").replaceChildren(...snapshot.nodes.map(card));
  $("empty").hidden = snapshot.nodes.length > 0;
}

function connect() {
  const stream = new EventSource("/api/cluster/events");
  stream.onopen = () => { $("stream").textContent = "live"; };
  stream.onmessage = (event) => render(JSON.parse(event.data));
  // EventSource reconnects by itself; say so meanwhile rather than show stale colours as live.
  stream.onerror = () => { $("stream").textContent = "reconnecting to the web backend…"; };
}

document.addEventListener("DOMContentLoaded", connect);
