// Wallet: sign in (API key, or an injected Ethereum wallet signing the token manager's
// challenge), then balance, faucet, usage, settlements and prices, refreshed every few seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;
let refresher = null;

function hexOf(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function start() {
  const info = await api("/api/wallet/info");
  if (info.ok && !info.data.payments) {
    showInfo($("message"), "Payments are off on this cluster: every inference is free, there is nothing to sign in to.");
    return;
  }
  $("faucet").hidden = !(info.ok && info.data.faucet);
  session.key() ? showAccount() : showSignIn();
}

function showSignIn() {
  clearInterval(refresher);
  $("account").hidden = true;
  $("signin").hidden = false;
  if (window.ethereum) {
    $("eth").replaceChildren(h("button", { id: "eth-signin", onclick: signInWithWallet }, "Sign in with your wallet"),
      h("p", { class: "muted" }, "Your wallet signs a one-time message (EIP-4361); no transaction, no fee."));
  } else {
    $("eth").replaceChildren(h("p", { class: "muted", id: "no-wallet" },
      "No browser wallet found (window.ethereum). Install one, such as MetaMask, to sign in with your address, or use an API key."));
  }
}

async function signInWithKey(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return showError($("message"), { status: 0, data: { error: "paste an API key first" } });
  session.signIn(key);
  const answer = await api("/api/wallet/summary");
  if (!answer.ok) {
    session.signOut();
    return showError($("message"), answer);
  }
  session.signIn(key, answer.data.account);
  location.reload();
}

async function signInWithWallet() {
  clearMessage($("message"));
  try {
    const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const challenge = await api("/api/wallet/challenge", { method: "POST", body: { address } });
    if (!challenge.ok) return showError($("message"), challenge);
    const signature = await window.ethereum.request({ method: "personal_sign", params: [hexOf(challenge.data.message), address] });
    const verified = await api("/api/wallet/verify", {
      method: "POST", body: { address: challenge.data.address, message: challenge.data.message, signature },
    });
    if (!verified.ok) return showError($("message"), verified);
    session.signIn(verified.data.api_key, verified.data.account);
    sessionStorage.setItem("tritonfleet.newKey", verified.data.api_key);
    location.reload();
  } catch (err) {
    showError($("message"), { status: 0, data: { error: `the wallet refused: ${err.message || err}` } });
  }
}

function signOut() {
  session.signOut();
  location.reload();
}

async function showAccount() {
  $("signin").hidden = true;
  $("account").hidden = false;
  const fresh = sessionStorage.getItem("tritonfleet.newKey");
  if (fresh) {
    sessionStorage.removeItem("tritonfleet.newKey");
    showInfo($("new-key"), "Your new API key (shown this once; the page keeps it in this browser): ", h("code", {}, fresh));
  }
  await refresh();
  refresher = setInterval(refresh, REFRESH_MS);
  const prices = await api("/api/wallet/prices");
  if (prices.ok) renderPrices(prices.data);
}

async function refresh() {
  const answer = await api("/api/wallet/summary");
  if (!answer.ok) {
    if (answer.status === 401) { session.signOut(); showSignIn(); }
    return showError($("message"), answer);
  }
  clearMessage($("message"));
  const data = answer.data;
  $("address").textContent = data.account;
  const b = data.balance;
  const cards = [["Deposit", b.deposit], ["Unsettled", b.unsettled], ["Reserved", b.reserved], ["Pending withdrawal", b.pending_withdrawal], ["Available", b.available]];
  $("balance").replaceChildren(...cards.map(([k, v]) =>
    h("div", { class: "card", "data-balance": k.toLowerCase().replace(" ", "_") }, h("div", { class: "k" }, k), h("div", { class: "v" }, v))));
  table($("usage"), ["When", "Model", "Version", "Amount", "State", "Request"], data.usage.map((c) =>
    [when(c.created_at), c.model, c.version || "latest", c.amount, c.state, h("span", { class: "mono" }, short(c.request_id))]),
  "No charges yet.");
  table($("settlements"), ["When", "Batch", "State", "Amount", "Charges", "Transaction"], data.settlements.map((s) =>
    [when(s.updated_at), h("span", { class: "mono" }, short(s.batch_id)), s.state, s.amount, s.charges,
      s.tx_hash ? h("span", { class: "mono tx", title: s.tx_hash }, s.tx_hash) : "–"]),
  "Nothing settled yet.");
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

function table(target, heads, rows, empty) {
  const numeric = new Set(["Amount", "Charges"]);
  target.replaceChildren(h("tr", {}, heads.map((x) => h("th", { class: numeric.has(x) ? "num" : null }, x))),
    ...rows.map((row) => h("tr", {}, row.map((cell, i) => h("td", { class: numeric.has(heads[i]) ? "num" : null }, cell)))));
  if (rows.length === 0) target.append(h("tr", {}, h("td", { colspan: heads.length, class: "muted" }, empty)));
}

function renderPrices(data) {
  const rows = Object.entries(data.prices).map(([model, price]) => [model, price]);
  rows.push(["any other model", data.default_price]);
  table($("prices"), ["Model", `Price (${data.unit})`], rows, "");
}

async function topUp() {
  const amount = Number($("amount").value);
  $("topup").disabled = true;
  showInfo($("faucet-message"), "Minting and depositing…");
  const answer = await api("/api/wallet/faucet", { method: "POST", body: { amount }, timeoutMs: 120000 });
  $("topup").disabled = false;
  if (!answer.ok) return showError($("faucet-message"), answer);
  showInfo($("faucet-message"), `Deposited ${answer.data.amount}; deposit now ${answer.data.deposit}. Transaction `,
    h("span", { class: "mono" }, answer.data.tx_hash));
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", signInWithKey);
  $("signout").addEventListener("click", signOut);
  $("refresh").addEventListener("click", refresh);
  $("topup").addEventListener("click", topUp);
  start();
});
