// Shared by every page: the navigation bar, calls to the backend, the signed-in API key.
"use strict";

const KEY_STORE = "tritonfleet.apiKey";
const ACCOUNT_STORE = "tritonfleet.account";
const PAGES = [["generate", "Generate"], ["playground", "Playground"], ["cluster", "Cluster"], ["wallet", "Wallet"]];

const session = {
  key: () => localStorage.getItem(KEY_STORE),
  account: () => localStorage.getItem(ACCOUNT_STORE),
  signIn(key, account) {
    localStorage.setItem(KEY_STORE, key);
    if (account) localStorage.setItem(ACCOUNT_STORE, account);
  },
  signOut() {
    localStorage.removeItem(KEY_STORE);
    localStorage.removeItem(ACCOUNT_STORE);
  },
};

// h("div", {class: "x", onclick: f}, child, ...): a small DOM builder, so no page builds HTML from strings.
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Every call answers {ok, status, data}; a backend that does not answer becomes an error
// message too, and `timeoutMs` bounds the wait so that no page hangs.
async function api(path, { method = "GET", body, timeoutMs = 30000 } = {}) {
  const headers = {};
  const key = session.key();
  if (key) headers["Authorization"] = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const answer = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: abort.signal,
    });
    let data = {};
    try { data = await answer.json(); } catch (_) { data = { error: `the backend answered ${answer.status}` }; }
    return { ok: answer.ok, status: answer.status, data };
  } catch (err) {
    const error = abort.signal.aborted
      ? `no answer within ${Math.round(timeoutMs / 1000)} s; try again later`
      : "the web backend is not answering; is `tritonfleet web` running?";
    return { ok: false, status: 0, data: { error } };
  } finally {
    clearTimeout(timer);
  }
}

// An error answer as a message, with the way forward when the backend names one.
function showError(target, answer) {
  const data = answer.data || {};
  const parts = [h("strong", {}, answer.status ? `Error ${answer.status}: ` : "Error: "), data.error || "unknown error"];
  if (data.wallet) parts.push(" ", h("a", { href: data.wallet }, "Open the wallet"));
  if (data.help) parts.push(" ", h("a", { href: data.help }, "How to add one"));
  target.replaceChildren(...parts);
  target.className = "message error";
}

function showInfo(target, ...parts) {
  target.replaceChildren(...parts);
  target.className = "message info";
}

function clearMessage(target) {
  target.replaceChildren();
  target.className = "message";
}

function short(text, keep = 6) {
  return text && text.length > 2 * keep + 3 ? `${text.slice(0, keep + 2)}…${text.slice(-keep)}` : text || "";
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(digits)).toString();
}

function renderHeader() {
  const here = location.pathname.replace(/^\//, "");
  const nav = h("nav", {}, PAGES.map(([path, title]) =>
    h("a", { href: "/" + path, class: here === path ? "current" : null }, title)));
  const account = session.account();
  const who = h("span", { class: "who", id: "who" },
    session.key() ? ["signed in", account ? ` as ${short(account)}` : " with an API key"] : h("a", { href: "/wallet" }, "not signed in"));
  document.body.prepend(h("header", { class: "top" }, h("span", { class: "brand" }, "TritonFleet"), nav, who));
}

document.addEventListener("DOMContentLoaded", renderHeader);
