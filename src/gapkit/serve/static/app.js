// gapkit search page. Everything shown from the index (captions, ids, fields) goes through
// textContent, never innerHTML, so a caption such as "<script>" stays text.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function fmt(x, digits) {
  return (x === null || x === undefined || Number.isNaN(x)) ? "n/a" : Number(x).toFixed(digits);
}

function pct(x) {
  return (x === null || x === undefined) ? "n/a" : Math.round(100 * x) + " %";
}

let corpusImageShare = null;

async function loadInfo() {
  try {
    const r = await fetch("info");
    const info = await r.json();
    const roles = info.roles || info.role_counts || {};
    const total = Object.values(roles).reduce((a, b) => a + Number(b || 0), 0);
    if (total > 0) corpusImageShare = Number(roles.image || 0) / total;
    const parts = Object.entries(roles).map(([k, v]) => `${v} ${k}`);
    const corr = info.correction && (info.correction.name || info.correction);
    $("index-info").textContent = `index: ${total} documents (${parts.join(", ")})` +
      (corr ? `; correction: ${typeof corr === "string" ? corr : JSON.stringify(corr)}` : "");
    if (corr) $("correction-name").textContent = `(${typeof corr === "string" ? corr : ""})`;
    if (!(info.calibrated_pairs || []).length) {
      $("index-info").textContent += "; P(match) needs a calibrated index (gapkit index build --correction calibrated)";
      $("min-prob").disabled = true;  // no probabilities to filter on
    }
  } catch (err) {
    $("index-info").textContent = "could not read the index info";
  }
}

function renderHit(h, rank) {
  const li = el("li", "hit");
  li.dataset.role = h.role;
  li.dataset.id = h.id;
  li.appendChild(el("span", "rank", rank));
  if (h.thumbnail) {
    const img = el("img");
    img.alt = h.role + " " + h.id;
    img.src = h.thumbnail;
    li.appendChild(img);
  } else {
    li.appendChild(el("span", "noimg", "T"));
  }
  const body = el("div");
  const cap = el("div", "caption");
  cap.appendChild(el("span", "role role-" + h.role, h.role));
  // an image document has no caption: show its id without the role prefix the badge already gives
  cap.appendChild(el("span", null, h.caption !== null ? h.caption : h.id.replace(/^image:/, "")));
  body.appendChild(cap);
  const meta = el("div", "meta");
  if (h.probability !== null) meta.appendChild(el("span", "prob", "P(match) " + fmt(h.probability, 2) + " · "));
  meta.appendChild(el("span", null, "score " + fmt(h.score, 3) + " · cosine " + fmt(h.raw_cosine, 3)));
  body.appendChild(meta);
  li.appendChild(body);
  return li;
}

function renderColumn(name, result) {
  const list = $("hits-" + name);
  list.replaceChildren();
  if (!result) { $("share-" + name).textContent = ""; return; }
  result.hits.forEach((h, i) => list.appendChild(renderHit(h, i + 1)));
  const top = result.hits.slice(0, 10);
  const nImg = top.filter((h) => h.role === "image").length;
  $("share-" + name).textContent = `images in the top ${top.length}: ${nImg} (${pct(result["image_share@10"])})` +
    (corpusImageShare !== null ? `; in the corpus: ${pct(corpusImageShare)}` : "");
  if (result.hits.length === 0) {
    list.appendChild(el("li", "muted", result.min_probability !== undefined && result.min_probability !== null
      ? `no hits with P(match) >= ${result.min_probability}` : "no hits"));
  }
}

function options() {
  const opts = { k: $("k").value || "10", role: $("role").value, mode: "both" };
  const minProb = $("min-prob").value.trim();
  if (minProb !== "" && !$("min-prob").disabled) opts.min_probability = minProb;  // the server checks 0..1
  return opts;
}

async function show(response) {
  const data = await response.json();
  if (!response.ok) {
    $("status").className = "error";
    $("status").textContent = data.error || ("error " + response.status);
    return;
  }
  $("status").className = "muted";
  const q = data.query || {};
  $("status").textContent = "results for " + (q.text !== undefined ? `"${q.text}"` : (q.image || "the query"));
  renderColumn("corrected", data.corrected);
  renderColumn("raw", data.raw);
  document.body.dataset.searched = String(Number(document.body.dataset.searched || 0) + 1);
}

async function searchText(ev) {
  if (ev) ev.preventDefault();
  const text = $("query").value.trim();
  if (!text) { $("status").className = "error"; $("status").textContent = "type a query first"; return; }
  $("query-preview").hidden = true;
  $("status").className = "muted";
  $("status").textContent = "searching ...";
  const params = new URLSearchParams({ text, ...options() });
  await show(await fetch("search?" + params.toString()));
}

async function searchImage() {
  const file = $("image").files[0];
  if (!file) return;
  $("preview-img").src = URL.createObjectURL(file);
  $("query-preview").hidden = false;
  $("status").className = "muted";
  $("status").textContent = "searching with the image ...";
  const params = new URLSearchParams(options());
  await show(await fetch("search?" + params.toString(),
    { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", searchText);
  $("image").addEventListener("change", searchImage);
  loadInfo();
});
