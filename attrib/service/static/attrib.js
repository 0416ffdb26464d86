// attrib's web page: plain JS, no build step, no other origin. Forms post to this server; the
// API key is read from the page's field for each write and sent as a header, never stored.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const FAMILY_COLOURS = { gan: "#c0392b", diffusion: "#1f6feb", autoregressive: "#8250df", real: "#1a7f37", other: "#7d8590" };

function $(sel, root) { return (root || document).querySelector(sel); }

async function errorLine(response) {
  // the API's errors are {"error": "one line", ...}; anything else is summarised by its status
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (e) { /* not JSON */ }
  return "the server answered " + response.status + " " + response.statusText;
}

function wireDrop(zone, input, onDrop) {
  if (!zone || !input) return;
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      if (onDrop) onDrop();
    }
  });
}

// -- identify ------------------------------------------------------------------------------
function setupIdentify() {
  const form = $("#identify-form");
  if (!form) return;
  const results = $("#results");
  const error = $("#identify-error");
  const button = $("button[type=submit]", form);
  wireDrop($("#drop"), $("#identify-files"), () => form.requestSubmit());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    button.disabled = true;
    results.setAttribute("aria-busy", "true");
    try {
      const r = await fetch("/ui/identify?fragment=1", { method: "POST", body: new FormData(form) });
      if (r.ok) {
        results.innerHTML = await r.text(); // HTML rendered and escaped by the server's templates
        drawMaps();
        const first = $(".result h2", results);
        if (first) { first.tabIndex = -1; first.focus(); }
      } else {
        results.innerHTML = "";
        error.textContent = "Could not identify: " + (await errorLine(r));
      }
    } catch (err) {
      error.textContent = "Could not reach the server: " + err.message;
    } finally {
      button.disabled = false;
      results.removeAttribute("aria-busy");
    }
  });
}

// -- map -----------------------------------------------------------------------------------
function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function titled(el, text) { svgEl("title", {}, el).textContent = text; return el; }

function queryPoints() {
  return Array.from(document.querySelectorAll("#results .result[data-x]")).map((el) => ({
    x: parseFloat(el.dataset.x), y: parseFloat(el.dataset.y), label: el.dataset.label,
  }));
}

function drawMap(fig, data) {
  const svg = $("svg", fig);
  svg.replaceChildren();
  const W = 600, H = 400, PAD = 28;
  const queries = queryPoints();
  const pts = [];
  for (const s of data.sources) pts.push(...s.prototypes, ...s.samples);
  for (const q of queries) pts.push([q.x, q.y]);
  if (!pts.length) {
    svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "map-empty" }, svg).textContent = "no sources enrolled yet";
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => PAD + ((x - x0) / ((x1 - x0) || 1)) * (W - 2 * PAD);
  const sy = (y) => H - PAD - ((y - y0) / ((y1 - y0) || 1)) * (H - 2 * PAD);
  const families = new Set();
  const stars = [];
  const placed = []; // labels drawn so far: one that would overlap another is left to its tooltip
  const label = (x, y, text, cls) => {
    const w = 7 * text.length, left = x + 8 + w > W;
    const box = [left ? x - 8 - w : x + 8, y - 10, w, 12];
    if (placed.some((b) => box[0] < b[0] + b[2] && b[0] < box[0] + box[2] && box[1] < b[1] + b[3] && b[1] < box[1] + box[3])) return;
    placed.push(box);
    const attrs = { x: left ? x - 8 : x + 8, y: y + 4, "text-anchor": left ? "end" : "start" };
    if (cls) attrs.class = cls;
    svgEl("text", attrs, svg).textContent = text;
  };
  for (const s of data.sources) {
    const colour = FAMILY_COLOURS[s.family] || FAMILY_COLOURS.other;
    families.add(s.family);
    for (const [x, y] of s.samples) titled(svgEl("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: colour, class: "sample" }, svg), s.name + " sample");
  }
  for (const q of queries) {
    const cx = sx(q.x), cy = sy(q.y), r = 9, pts5 = [];
    for (let i = 0; i < 10; i++) {
      const a = -Math.PI / 2 + (i * Math.PI) / 5, rr = i % 2 ? r / 2.3 : r;
      pts5.push((cx + rr * Math.cos(a)).toFixed(1) + "," + (cy + rr * Math.sin(a)).toFixed(1));
    }
    stars.push(titled(svgEl("polygon", { points: pts5.join(" "), class: "query" }), "queried: " + q.label));
    label(cx + 3, cy - 10, q.label, "query-label"); // labels first: a query's name wins over a source's
  }
  for (const s of data.sources) {
    const colour = FAMILY_COLOURS[s.family] || FAMILY_COLOURS.other;
    s.prototypes.forEach(([x, y], i) => {
      titled(svgEl("circle", { cx: sx(x), cy: sy(y), r: 6, fill: colour, class: "proto" }, svg), s.name + " (" + s.family + ")");
      if (i === 0) label(sx(x), sy(y), s.name);
    });
  }
  for (const star of stars) svg.appendChild(star); // stars on top of every dot
  const legend = $("[data-map-legend]", fig);
  if (legend) {
    legend.replaceChildren();
    const entries = Array.from(families).map((f) => [f, "fam-" + f]);
    if (queries.length) entries.push(["queried image", "fam-query"]);
    for (const [text, cls] of entries) {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      dot.className = FAMILY_COLOURS[text] || text === "queried image" ? cls : "fam-other";
      li.append(dot, text);
      legend.appendChild(li);
    }
  }
  const explained = $("[data-map-explained]", fig);
  if (explained && data.explained) {
    const kept = Math.round((data.explained[0] + data.explained[1]) * 100);
    explained.textContent = " (these two axes keep " + kept + "% of the variance)";
  }
}

const mapCache = {};
async function drawMaps() {
  for (const fig of document.querySelectorAll("figure[data-map]")) {
    const url = fig.dataset.map;
    try {
      if (!mapCache[url]) {
        const r = await fetch(url);
        if (!r.ok) throw new Error(await errorLine(r));
        mapCache[url] = await r.json();
      }
      drawMap(fig, mapCache[url]);
    } catch (err) {
      const svg = $("svg", fig);
      svg.replaceChildren();
      svgEl("text", { x: 300, y: 200, "text-anchor": "middle", class: "map-empty" }, svg).textContent = "map unavailable: " + err.message;
    }
  }
}

// -- enroll and remove -------------------------------------------------------------------------
function say(text, refused) {
  const status = $("#write-status");
  status.textContent = text;
  status.classList.toggle("refused", !!refused);
}

function keyHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function write(method, url, body, done) {
  const r = await fetch(url, { method, body, headers: keyHeaders(), credentials: "omit" });
  if (r.status === 401 || r.status === 403) {
    say("Refused (" + r.status + "): " + (await errorLine(r)), true);
  } else if (!r.ok) {
    say("Failed (" + r.status + "): " + (await errorLine(r)), true);
  } else {
    say(done(await r.json()), false);
    await refreshList();
  }
}

async function refreshList() {
  const r = await fetch("/ui/source-list");
  if (r.ok) $("#source-list").innerHTML = await r.text(); // server-rendered, escaped
}

function setupEnroll() {
  const form = $("#enroll-form");
  if (!form) return;
  const files = $("#enroll-files");
  wireDrop($("#enroll-drop"), files);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("#enroll-name");
    if (!name.checkValidity()) { say("Source name: use letters, digits and . _ + - (up to 128, starting with a letter or digit).", true); name.focus(); return; }
    if (!files.files.length) { say("Choose at least one sample image.", true); files.focus(); return; }
    const body = new FormData();
    for (const f of files.files) body.append("image", f, f.name);
    const family = $("#enroll-family").value;
    if (family) body.append("family", family);
    for (const line of $("#enroll-meta").value.split("\n")) if (line.trim()) body.append("meta", line.trim());
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      await write("POST", "/v1/sources/" + encodeURIComponent(name.value) + "/samples", body, (res) =>
        "Enrolled " + res.enrolled + " image" + (res.enrolled === 1 ? "" : "s") + " into " + res.source +
        (res.duplicate ? "; " + res.duplicate + " already enrolled" : "") + (res.failed ? "; " + res.failed + " unreadable" : "") + ".");
    } catch (err) {
      say("Could not reach the server: " + err.message, true);
    } finally {
      button.disabled = false;
    }
  });
  $("#source-list").addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-remove]");
    if (!button) return;
    const name = button.dataset.remove;
    if (!window.confirm("Remove " + name + " and all its samples from the gallery?")) return;
    try {
      await write("DELETE", "/v1/sources/" + encodeURIComponent(name), null, (res) =>
        "Removed " + res.source + " (" + res.removed_samples + " samples).");
    } catch (err) {
      say("Could not reach the server: " + err.message, true);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupIdentify();
  setupEnroll();
  drawMaps();
});
