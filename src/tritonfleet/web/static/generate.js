// Generate: the text-to-image form, a progress bar while the gateway works, the images and facts.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];

async function loadModels() {
  const answer = await api("/api/generate/models");
  if (!answer.ok) return showError($("no-model"), answer);
  models = answer.data.models;
  const limits = answer.data.limits;
  $("steps").min = limits.steps[0]; $("steps").max = limits.steps[1];
  $("samples").min = limits.samples[0]; $("samples").max = limits.samples[1];
  $("guidance").min = limits.guidance_scale[0]; $("guidance").max = limits.guidance_scale[1];
  $("model").replaceChildren(...models.map((m) => h("option", { value: m.name }, m.name)));
  if (models.length === 0) {
    showInfo($("no-model"), "No node serves a text-to-image model now, so this page has nothing to run. ",
      h("a", { href: answer.data.help }, "How to add one"), ".");
    $("run").disabled = true;
  } else {
    clearMessage($("no-model"));
    $("run").disabled = false;
  }
}

function number(id) {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

// Triton's HTTP protocol reports no progress of a running request: the bar follows the time
// the last requests took per step, and stops short of the end until the answer is in.
function startProgress(steps, samples) {
  const chosen = models.find((m) => m.name === $("model").value);
  const expectedS = chosen && chosen.per_step_s ? chosen.per_step_s * steps * samples : null;
  const started = performance.now();
  $("progress").hidden = false;
  $("bar").classList.toggle("indeterminate", expectedS === null);
  const tick = () => {
    const elapsed = (performance.now() - started) / 1000;
    if (expectedS) {
      const share = Math.min(elapsed / expectedS, 0.95);
      $("bar").firstElementChild.style.width = `${(share * 100).toFixed(0)}%`;
      $("progress-text").textContent = `Generating… ${elapsed.toFixed(1)} s of about ${expectedS.toFixed(1)} s`;
    } else {
      $("progress-text").textContent = `Generating… ${elapsed.toFixed(1)} s`;
    }
  };
  tick();
  const timer = setInterval(tick, 100);
  return () => { clearInterval(timer); $("progress").hidden = true; $("bar").firstElementChild.style.width = "0"; };
}

async function generate(event) {
  event.preventDefault();
  clearMessage($("message"));
  const body = {
    model: $("model").value || "",
    prompt: $("prompt").value,
    steps: number("steps") ?? 20,
    samples: number("samples") ?? 1,
    guidance_scale: number("guidance") ?? 7.5,
    seed: number("seed"),
  };
  $("run").disabled = true;
  const stop = startProgress(body.steps, body.samples);
  const answer = await api("/api/generate", { method: "POST", body, timeoutMs: 180000 });
  stop();
  $("run").disabled = models.length === 0;
  if (!answer.ok) return showError($("message"), answer);
  show(answer.data);
  loadModels();  // fresher time estimates for the next run
}

function show(data) {
  $("images").replaceChildren(...data.images.map((src, i) =>
    h("img", { src, alt: `image ${i + 1} for: ${data.prompt}`, class: "generated" })));
  const facts = [
    ["Model", data.model], ["Node", data.node], ["Latency", `${fmt(data.latency_ms, 4)} ms`],
    ["Cost", data.charge === null ? "free (payments off)" : `${data.charge} credit`],
    ["Credit left", data.credit_remaining ?? "–"], ["Seed", data.seed], ["Steps", data.steps],
    ["Guidance", data.guidance_scale], ["Request", h("span", { class: "mono" }, short(data.request_id))],
  ];
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("result").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", generate);
  loadModels();
});
