// The search page: text and image search over /v1/search, and zero-shot /v1/classify.
// Plain JS, no build step. Everything user- or server-provided is set as text, never HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const blobUrls = [];

// -- talking to the service -----------------------------------------------------------------

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function friendlyError(status, error) {
  const message = (error && error.message) || "";
  switch (status) {
    case 0: return "Cannot reach the server. Is it still running?";
    case 401: return "This server needs an access token. Enter it under Settings below.";
    case 403: return `That is not allowed on this server: ${message}`;
    case 413: return "That image is too large for this server. Try a smaller one.";
    case 422: return `The request was not understood: ${message}`;
    case 503: return `The image index is not available right now. ${message}`;
    case 504: return "The server took too long to answer. Please try again.";
    default:
      if (error && error.type === "invalid_image") {
        return "That file does not look like an image this server can read.";
      }
      return message || `Something went wrong (HTTP ${status}).`;
  }
}

async function api(path, body) {
  let response;
  try {
    response = await fetch(path, { method: "POST", body, headers: authHeaders() });
  } catch (_) {
    throw new Error(friendlyError(0));
  }
  let payload = null;
  try { payload = await response.json(); } catch (_) { /* not JSON: handled below */ }
  if (!response.ok) throw new Error(friendlyError(response.status, payload && payload.error));
  return payload;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
}

// -- search ---------------------------------------------------------------------------------

function basename(uri) {
  return uri ? uri.split(/[\\/]/).pop() : "";
}

async function thumbnail(img, href) {
  if (!href) return;
  if (!$("token").value.trim()) {
    img.src = href;
    return;
  }
  // An <img> cannot send the Authorization header: fetch the bytes and show a blob URL.
  try {
    const response = await fetch(href, { headers: authHeaders() });
    if (response.ok) {
      const url = URL.createObjectURL(await response.blob());
      blobUrls.push(url);
      img.src = url;
    }
  } catch (_) { /* the card keeps its alt text */ }
}

function renderHits(hits) {
  for (const url of blobUrls.splice(0)) URL.revokeObjectURL(url);
  const list = $("results");
  list.replaceChildren();
  for (const hit of hits) {
    const item = document.createElement("li");
    item.className = "result";
    item.dataset.id = hit.id;
    item.dataset.uri = hit.uri || "";
    item.dataset.score = String(hit.score);
    const img = document.createElement("img");
    img.alt = hit.citation || basename(hit.uri) || hit.id;
    img.loading = "lazy";
    thumbnail(img, hit.image_href);
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = hit.citation || basename(hit.uri) || hit.id;
    name.title = hit.uri || hit.id;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    meta.append(score, name);
    item.append(img, meta);
    list.append(item);
  }
}

async function search(body, description) {
  const form = $("text-form");
  showError("");
  busy(form, true);
  $("status").textContent = `Searching ${description}…`;
  try {
    const result = await api("/v1/search", body);
    renderHits(result.hits);
    const n = result.hits.length;
    $("status").textContent = n
      ? `${n} result${n === 1 ? "" : "s"} ${description}`
      : "No images in the index yet. Index a folder with: clip-multimodal index DIR";
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  } finally {
    busy(form, false);
  }
}

function searchText(event) {
  event.preventDefault();
  const text = $("query").value.trim();
  if (!text) {
    showError("Type what you are looking for, or drop an image below.");
    return;
  }
  const body = new FormData();
  body.append("text", text);
  body.append("k", $("k").value);
  search(body, `for “${text}”`);
}

function searchImage(file) {
  if (!checkImage(file)) return;
  preview($("search-preview"), file);
  const body = new FormData();
  body.append("file", file);
  body.append("k", $("k").value);
  search(body, `similar to ${file.name}`);
}

// -- what is this? ----------------------------------------------------------------------------

let classifyFile = null;

function renderPredictions(predictions) {
  const list = $("predictions");
  list.replaceChildren();
  for (const p of predictions) {
    const item = document.createElement("li");
    item.className = "prediction";
    item.dataset.label = p.label;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(p.probability * 100).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(p.probability * 100).toFixed(1)}%`;
    item.append(label, bar, pct);
    list.append(item);
  }
}

async function classify(event) {
  if (event) event.preventDefault();
  const labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!classifyFile) {
    showError("Choose or drop an image first.");
    return;
  }
  if (labels.length < 2) {
    showError("Give at least two labels, separated by commas.");
    return;
  }
  const form = $("classify-form");
  const body = new FormData();
  body.append("file", classifyFile);
  for (const label of labels) body.append("labels", label);
  showError("");
  busy(form, true);
  $("classify-status").textContent = "Thinking…";
  try {
    const result = await api("/v1/classify", body);
    renderPredictions(result.predictions);
    const top = result.predictions[0];
    $("classify-status").textContent = `Most likely: ${top.label}`;
  } catch (error) {
    $("classify-status").textContent = "";
    showError(error.message);
  } finally {
    busy(form, false);
  }
}

// -- files, drag and drop, tabs ----------------------------------------------------------------

function checkImage(file) {
  if (!file) return false;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image. Choose a PNG, JPEG, GIF or WebP file.`);
    return false;
  }
  return true;
}

function preview(img, file) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  img.hidden = false;
}

function wireDrop(zone, input, onFile) {
  input.addEventListener("change", () => onFile(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    onFile(event.dataTransfer.files[0]);
  });
}

function showTab(name) {
  for (const tab of ["search", "classify"]) {
    const on = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(on));
    $(`view-${tab}`).hidden = !on;
  }
  showError("");
}

function restoreToken() {
  const input = $("token");
  input.value = sessionStorage.getItem("clip-multimodal-token") || "";
  input.addEventListener("change", () => {
    sessionStorage.setItem("clip-multimodal-token", input.value.trim());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  restoreToken();
  $("settings-form").addEventListener("submit", (event) => event.preventDefault());
  $("tab-search").addEventListener("click", () => showTab("search"));
  $("tab-classify").addEventListener("click", () => showTab("classify"));
  $("text-form").addEventListener("submit", searchText);
  $("classify-form").addEventListener("submit", classify);
  wireDrop($("search-drop"), $("search-file"), searchImage);
  wireDrop($("classify-drop"), $("classify-file"), (file) => {
    if (!checkImage(file)) return;
    classifyFile = file;
    preview($("classify-preview"), file);
    classify();
  });
  document.body.dataset.ready = "true";
});
