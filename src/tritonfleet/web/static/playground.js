// Playground: pick a model, fill the generated form (or draw on the pad), run it, see outputs.
"use strict";

const $ = (id) => document.getElementById(id);
const PAD_PX = 224;
let current = null;

async function loadModels() {
  const answer = await api("/api/models");
  if (!answer.ok) return showError($("message"), answer);
  const list = answer.data.models;
  if (list.length === 0) {
    showInfo($("message"), "No node serves any model now. See the ", h("a", { href: "/cluster" }, "cluster"), ".");
  }
  $("models").replaceChildren(h("div", { class: "muted" }, `${list.length} models`), ...list.map((m) =>
    h("button", { "data-model": m.name, onclick: () => select(m) }, m.name)));
  const wanted = new URLSearchParams(location.search).get("model");
  const first = list.find((m) => m.name === wanted) || list[0];
  if (first) select(first);
}

// The shape a form starts from: every variable dimension (-1) as 1.
function concrete(shape) {
  return shape.map((d) => (d === -1 ? 1 : d));
}

function filled(shape, value) {
  if (shape.length === 0) return value;
  return Array.from({ length: shape[0] }, () => filled(shape.slice(1), value));
}

// An input drawn by hand: two equal trailing dimensions of 8..64 pixels, numbers.
function drawable(spec) {
  const fixed = spec.shape.filter((d) => d !== -1);
  return spec.datatype !== "BYTES" && fixed.length === 2 && fixed[0] === fixed[1] && fixed[0] >= 8 && fixed[0] <= 64;
}

function select(model) {
  current = model;
  for (const button of $("models").querySelectorAll("button")) {
    button.classList.toggle("current", button.dataset.model === model.name);
  }
  const fields = model.inputs.map((spec) => {
    const start = spec.datatype === "BYTES" ? JSON.stringify("hello") : JSON.stringify(filled(concrete(spec.shape), 0));
    return h("div", {},
      h("label", { for: `in-${spec.name}` }, `${spec.name} `, h("span", { class: "mono" }, `${spec.datatype} [${spec.shape.join(", ")}]`)),
      h("textarea", { id: `in-${spec.name}`, "data-input": spec.name, rows: start.length > 80 ? 4 : 1 }, start));
  });
  const pad = model.inputs.find(drawable);
  const outputs = model.outputs.map((o) => `${o.name} ${o.datatype} [${o.shape.join(", ")}]`).join(" · ");
  $("model").replaceChildren(
    h("h3", {}, model.name, " ", h("span", { class: "pill" }, model.platform || "model"),
      model.text_to_image ? h("a", { href: "/generate", class: "pill" }, "text to image: open Generate") : null),
    h("div", { class: "muted" }, `versions ${model.versions.join(", ")} · outputs: ${outputs}`),
    pad ? drawPad(pad) : null,
    h("p", { class: "muted" }, "Values: one number (or text) fills the whole tensor; or nested JSON lists of its shape."),
    ...fields,
    h("p", {}, h("button", { id: "run", onclick: run }, "Run")),
    h("div", { id: "run-message", class: "message" }));
  $("model").hidden = false;
  $("result").hidden = true;
}

function drawPad(spec) {
  const side = spec.shape.filter((d) => d !== -1)[0];
  const canvas = h("canvas", { class: "pad", id: "pad", width: PAD_PX, height: PAD_PX });
  const scale = h("input", { id: "pad-scale", type: "number", value: "16", min: "1", style: "width: 90px" });
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, PAD_PX, PAD_PX); };
  clear();
  let drawing = false;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true; canvas.setPointerCapture(e.pointerId);
    ctx.beginPath(); ctx.moveTo(...at(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e)); ctx.strokeStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.stroke();
  });
  canvas.addEventListener("pointerup", () => {
    if (!drawing) return;
    drawing = false;
    const grid = downsample(ctx, side, Number(scale.value) || 1);
    if (!grid) return;
    $(`in-${spec.name}`).value = JSON.stringify(grid);
    run();
  });
  return h("div", { class: "draw" }, canvas,
    h("div", {},
      h("div", {}, `Draw on the pad: it fills ${spec.name} (${side}×${side}) and runs the model.`),
      h("label", { for: "pad-scale" }, "Pixel scale (digits: 0..16)"), scale,
      h("p", {}, h("button", { class: "secondary", onclick: clear }, "Clear")),
      h("div", { class: "muted" }, "Prediction"), h("div", { class: "prediction", id: "prediction" }, "–"),
      h("div", { class: "bars", id: "bars" })));
}

// The drawing cropped to its ink, centred in a square with a margin (as the digits data set
// was made), then averaged into side×side cells scaled to 0..scale.
function downsample(ctx, side, scale) {
  const pixels = ctx.getImageData(0, 0, PAD_PX, PAD_PX).data;
  let [x0, y0, x1, y1] = [PAD_PX, PAD_PX, -1, -1];
  for (let y = 0; y < PAD_PX; y++) for (let x = 0; x < PAD_PX; x++) {
    if (pixels[(y * PAD_PX + x) * 4] > 32) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  }
  if (x1 < 0) return null;
  const box = Math.max(x1 - x0, y1 - y0) * 1.2 + 1;
  const left = (x0 + x1) / 2 - box / 2, top = (y0 + y1) / 2 - box / 2;
  const sums = Array.from({ length: side }, () => new Array(side).fill(0));
  const counts = Array.from({ length: side }, () => new Array(side).fill(0));
  for (let y = 0; y < PAD_PX; y++) for (let x = 0; x < PAD_PX; x++) {
    const cx = Math.floor(((x - left) / box) * side), cy = Math.floor(((y - top) / box) * side);
    if (cx < 0 || cy < 0 || cx >= side || cy >= side) continue;
    sums[cy][cx] += pixels[(y * PAD_PX + x) * 4]; counts[cy][cx] += 1;
  }
  const means = sums.map((row, y) => row.map((s, x) => (counts[y][x] ? s / counts[y][x] : 0)));
  const peak = Math.max(...means.flat()) || 1;
  return means.map((row) => row.map((v) => Math.round((v / peak) * scale * 100) / 100));
}

function readInputs() {
  const inputs = {};
  for (const area of $("model").querySelectorAll("textarea[data-input]")) {
    try { inputs[area.dataset.input] = JSON.parse(area.value); }
    catch (_) { inputs[area.dataset.input] = area.value; }  // plain text, for BYTES inputs
  }
  return inputs;
}

async function run() {
  const button = $("run"), message = $("run-message");
  button.disabled = true;
  showInfo(message, "Running…");
  const answer = await api(`/api/models/${encodeURIComponent(current.name)}/infer`,
    { method: "POST", body: { inputs: readInputs() }, timeoutMs: 180000 });
  button.disabled = false;
  if (!answer.ok) return showError(message, answer);
  clearMessage(message);
  showOutputs(answer.data);
}

function showOutputs(data) {
  const facts = [["Node", data.node], ["Latency", `${fmt(data.latency_ms, 4)} ms`],
    ["Cost", data.charge === null ? "free (payments off)" : `${data.charge} credit`], ["Credit left", data.credit_remaining ?? "–"]];
  $("result").replaceChildren(h("h3", {}, "Outputs"),
    h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    ...data.outputs.map(outputView));
  $("result").hidden = false;
  if ($("prediction")) showPrediction(data.outputs);
}

function outputView(output) {
  const title = h("h4", {}, output.name, " ", h("span", { class: "mono muted" }, `${output.datatype} [${output.shape.join(", ")}]`));
  if (output.kind === "image") {
    return h("div", { class: "output images", "data-output": output.name }, title, output.images.map((src) => h("img", { src, alt: output.name })));
  }
  if (output.kind === "text") {
    return h("div", { class: "output", "data-output": output.name }, title, h("pre", {}, output.values.join("\n")));
  }
  const columns = output.rows.length ? output.rows[0].length : 0;
  const head = h("tr", {}, h("th", {}, "#"), Array.from({ length: columns }, (_, i) => h("th", { class: "num" }, i)));
  const body = output.rows.map((row, r) => h("tr", {}, h("td", {}, r), row.map((v) => h("td", { class: "num" }, fmt(v, 4)))));
  return h("div", { class: "output", "data-output": output.name }, title, h("table", {}, head, ...body),
    output.truncated ? h("div", { class: "muted" }, "(cut: too many values to show)") : null);
}

// The pad's verdict: an integer output holding one value (a label), else the largest score.
function showPrediction(outputs) {
  const tables = outputs.filter((o) => o.kind === "table");
  const label = tables.find((o) => /INT/.test(o.datatype) && o.rows.flat().length === 1);
  const scores = tables.find((o) => /FP/.test(o.datatype) && o.rows.length === 1);
  const values = scores ? scores.rows[0] : [];
  const best = label ? label.rows.flat()[0] : values.indexOf(Math.max(...values));
  $("prediction").textContent = best;
  $("bars").replaceChildren(...values.flatMap((v, i) =>
    [h("span", {}, i), h("div", { class: "bar", style: `width: ${Math.max(v * 100, 1).toFixed(1)}%` }), h("span", { class: "num" }, fmt(v, 2))]));
}

document.addEventListener("DOMContentLoaded", loadModels);
