// The page: plain HTML, CSS and JavaScript, no build step, embedded here so the one `axon` binary
// serves it wherever it is installed. Miner output reaches the DOM only through textContent and
// attributes, never as markup, and the server's Content-Security-Policy allows no inline script.
public enum PageAssets {
    public static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Axon playground</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>Axon playground</h1>
  <p class="subtitle">Ask the network's miners one text and see what each thinks. Every question is signed with the
  playground's validator key and asked in network space (GPT-2 tokens), so the answers compare.</p>
</header>
<main>
<form id="ask" autocomplete="off">
  <fieldset class="modes">
    <legend>Question</legend>
    <label><input type="radio" name="mode" value="next" checked> next token</label>
    <label><input type="radio" name="mode" value="generate"> generate</label>
    <label><input type="radio" name="mode" value="embed"> embeddings</label>
  </fieldset>
  <label class="text">Text <span class="count" id="count"></span>
    <textarea id="text" name="text" rows="3" required>The capital of France is</textarea>
  </label>
  <label class="text only-embed">Second text (cosine similarity with the first)
    <textarea id="text2" name="text2" rows="2">Paris is the largest city in France.</textarea>
  </label>
  <fieldset class="only-generate params">
    <legend>Generation (TEXT_SEQ_2_SEQ, sampled)</legend>
    <label>temperature <input id="temperature" name="temperature" type="number" min="0.05" max="10" step="0.05" value="0.8"></label>
    <label>top-p <input id="top_p" name="top_p" type="number" min="0.05" max="1" step="0.05" value="0.95"></label>
    <label>max tokens <input id="max_tokens" name="max_tokens" type="number" min="1" max="128" step="1" value="24"></label>
  </fieldset>
  <fieldset class="miners">
    <legend>Miners <button type="button" id="refresh">refresh</button></legend>
    <table id="miner-table">
      <thead><tr><th></th><th>miner</th><th>stake</th><th>weight</th><th>model</th><th>INFO</th></tr></thead>
      <tbody></tbody>
    </table>
  </fieldset>
  <button type="submit" id="submit">Ask</button>
  <span id="form-status" role="status"></span>
</form>
<section id="results" aria-live="polite"></section>
</main>
</body>
</html>
"""#

    public static let style = #"""
:root { --fg: #1d2330; --muted: #667; --line: #d8dce4; --bar: #3b6fd8; --bad: #b3261e; --ok: #1b7f3b; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); margin: 0; background: #f6f7f9; }
header { padding: 12px 24px 4px; }
h1 { margin: 0; font-size: 22px; }
.subtitle { margin: 4px 0 0; color: var(--muted); max-width: 60em; }
main { padding: 8px 24px 24px; }
form { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
fieldset { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; }
label.text { display: block; margin: 8px 0; }
textarea { display: block; width: 100%; font: inherit; padding: 6px; }
.params label { margin-right: 16px; }
.params input { width: 6em; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 2px 10px 2px 0; }
td.num { font-variant-numeric: tabular-nums; }
.count { color: var(--muted); font-size: 13px; }
#submit { font-size: 16px; padding: 6px 20px; }
#form-status { margin-left: 12px; color: var(--muted); }
body:not(.mode-embed) .only-embed, body:not(.mode-generate) .only-generate { display: none; }
#results { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; width: 380px; }
.card h2 { font-size: 16px; margin: 0 0 4px; }
.card .meta { font-size: 13px; color: var(--muted); margin-bottom: 6px; }
.card .code { font-weight: 600; }
.card.ok .code { color: var(--ok); }
.card.error .code { color: var(--bad); }
.card .message { font-size: 13px; color: var(--bad); white-space: pre-wrap; word-break: break-word; }
.card.pending .meta::after { content: " asking…"; }
.bar-row { display: grid; grid-template-columns: 120px 1fr 64px; gap: 6px; align-items: center; font-size: 13px; }
.phrase { font-family: ui-monospace, monospace; white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.track { background: #eef1f6; height: 14px; border-radius: 3px; overflow: hidden; }
.fill { background: var(--bar); height: 100%; }
.prob { text-align: right; font-variant-numeric: tabular-nums; }
.continuation { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; font-size: 13px; background: #f3f5f8; padding: 6px; border-radius: 4px; }
.cosine { font-size: 22px; font-variant-numeric: tabular-nums; }
"""#

    public static let script = #"""
"use strict";
// Miner output is only ever put in the page with textContent or as attribute values: never as markup.
const state = { miners: [], limits: { max_text_bytes: 2000, max_new_tokens: 128, max_concurrent_queries: 8, topk: 10 } };
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function showMode() {
  document.body.classList.remove("mode-next", "mode-generate", "mode-embed");
  document.body.classList.add("mode-" + mode());
}

function countBytes() {
  const bytes = new TextEncoder().encode($("text").value).length;
  $("count").textContent = bytes + " / " + state.limits.max_text_bytes + " bytes";
}

function formatNumber(value, digits) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

async function loadMiners() {
  $("form-status").textContent = "asking the miners for INFO…";
  const body = $("miner-table").tBodies[0];
  try {
    const response = await fetch("/api/miners");
    const data = await response.json();
    if (!response.ok) throw new Error("HTTP " + response.status + ": " + (data.error || ""));
    state.miners = Array.isArray(data.miners) ? data.miners : [];
    if (data.limits) state.limits = data.limits;
  } catch (error) {
    $("form-status").textContent = "cannot list the miners: " + error.message;
    return;
  }
  const checked = new Set(Array.from(body.querySelectorAll("input:checked")).map((box) => box.value));
  body.replaceChildren();
  for (const miner of state.miners) {
    const row = el("tr");
    row.dataset.miner = miner.id;
    const box = el("input");
    box.type = "checkbox";
    box.value = miner.id;
    box.checked = checked.size === 0 || checked.has(miner.id);
    const pick = el("td");
    pick.append(box);
    row.append(pick, el("td", "", miner.label + " · " + miner.address),
               el("td", "num", miner.stake === null || miner.stake === undefined ? "–" : formatNumber(miner.stake, 1)),
               el("td", "num", miner.weight === null || miner.weight === undefined ? "–" : formatNumber(miner.weight, 4)),
               el("td", "", miner.model || "–"),
               el("td", miner.code === 1 ? "" : "message", miner.code + " " + miner.code_name + (miner.message ? ": " + miner.message : "")));
    body.append(row);
  }
  $("text").maxLength = state.limits.max_text_bytes;
  $("max_tokens").max = state.limits.max_new_tokens;
  countBytes();
  $("form-status").textContent = state.miners.length + " miners";
}

function card(miner) {
  const node = el("article", "card pending");
  node.dataset.miner = miner.id;
  node.append(el("h2", "", miner.label + (miner.model ? " · " + miner.model : "")), el("div", "meta"), el("div", "message"), el("div", "answer"));
  return node;
}

function fill(node, answer, kind) {
  node.classList.remove("pending");
  const ok = answer.code === 1;
  node.classList.add(ok ? "ok" : "error");
  node.dataset.code = String(answer.code);
  const meta = node.querySelector(".meta");
  meta.replaceChildren(el("span", "code", answer.code + " " + (answer.code_name || "")),
                       el("span", "latency", answer.latency_ms === null || answer.latency_ms === undefined ? "" : " · " + formatNumber(answer.latency_ms, 1) + " ms"));
  node.querySelector(".message").textContent = answer.message || "";
  const target = node.querySelector(".answer");
  target.replaceChildren();
  if (!ok) return;
  if (kind === "next" && Array.isArray(answer.phrases)) {
    const bars = el("div", "bars");
    for (const phrase of answer.phrases) {
      const p = Number(phrase.probability);
      const row = el("div", "bar-row");
      row.dataset.probability = String(p);
      const track = el("div", "track");
      const bar = el("div", "fill");
      bar.style.width = (Math.max(0, Math.min(1, p)) * 100).toFixed(2) + "%";
      track.append(bar);
      row.append(el("span", "phrase", JSON.stringify(String(phrase.text))), track, el("span", "prob", formatNumber(p, 4)));
      bars.append(row);
    }
    target.append(bars, el("div", "meta floor", "any other phrase: " + Number(answer.floor).toExponential(2)));
  } else if (kind === "generate") {
    target.append(el("div", "continuation", answer.text), el("div", "meta", answer.tokens + " tokens"));
  } else if (kind === "embed") {
    target.append(el("div", "cosine", formatNumber(answer.cosine, 4)), el("div", "meta", "cosine of the mean hidden states (width " + answer.width + ")"));
  }
}

async function ask(miner, kind, payload, node) {
  let answer;
  try {
    const response = await fetch("/api/" + kind, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ miner: miner.id }, payload)),
    });
    const data = await response.json().catch(() => ({ error: "the playground's answer is not JSON" }));
    answer = response.ok ? data : { code: "HTTP " + response.status, code_name: "", message: data.error || "no message" };
  } catch (error) {
    answer = { code: "HTTP", code_name: "failed", message: "the playground did not answer: " + error.message };
  }
  fill(node, answer, kind);
}

async function submit(event) {
  event.preventDefault();
  const kind = mode();
  const picked = state.miners.filter((miner) => {
    const box = document.querySelector('#miner-table input[value="' + CSS.escape(miner.id) + '"]');
    return box && box.checked;
  });
  const results = $("results");
  results.replaceChildren();
  if (picked.length === 0) { $("form-status").textContent = "pick at least one miner"; return; }
  const payload = { text: $("text").value };
  if (kind === "embed") payload.text2 = $("text2").value;
  if (kind === "generate") {
    payload.temperature = Number($("temperature").value);
    payload.top_p = Number($("top_p").value);
    payload.max_tokens = Number($("max_tokens").value);
  }
  document.body.dataset.state = "asking";
  $("submit").disabled = true;
  $("form-status").textContent = "asking " + picked.length + " miners…";
  const nodes = picked.map((miner) => { const node = card(miner); results.append(node); return node; });
  // The server caps questions in flight; stay within half of it so two tabs still fit.
  const width = Math.max(1, Math.floor(state.limits.max_concurrent_queries / 2));
  let next = 0;
  async function worker() {
    while (next < picked.length) {
      const index = next++;
      await ask(picked[index], kind, payload, nodes[index]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, picked.length) }, worker));
  $("submit").disabled = false;
  $("form-status").textContent = picked.length + " answers";
  document.body.dataset.state = "done";
}

document.addEventListener("DOMContentLoaded", () => {
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", showMode);
  $("text").addEventListener("input", countBytes);
  $("ask").addEventListener("submit", submit);
  $("refresh").addEventListener("click", loadMiners);
  showMode();
  loadMiners().then(() => { document.body.dataset.state = "ready"; });
});
"""#
}
