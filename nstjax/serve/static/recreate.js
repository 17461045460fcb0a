/* nstjax serve: the Recreate mode's drawing board, and the stages of a recreate job.
 *
 * A layer is a Uint8Array of class ids (one per pixel) plus the RGBA pixels drawn from it; the board shows
 * the pixels with putImageData, never with canvas strokes, so it only ever holds exact palette colours (no
 * antialiasing) and the PNG it makes reads back as the same ids. Two layers: the sketch, and the painting's
 * label map, drawn half-transparent over the painting. Uses el() and $() of app.js.
 */
"use strict";

const Recreate = (() => {
  const NONE = 255;               // not yet labelled (the painting's label map only)
  const SKETCH_SIZE = [384, 256]; // a new sketch: width, height
  const MAX_SIDE = 1024;          // the painting's label map at most this on its longest side
  const HISTORY = 40;
  const r = {
    mode: null, palette: [], cls: 0, tool: "brush", size: 12, layer: "sketch",
    layers: { sketch: null, labels: null }, painting: null, stroke: null,
  };

  function makeLayer(w, h, fill, ids) {
    const layer = { w, h, ids: ids || new Uint8Array(w * h).fill(fill), blank: fill, undo: [], redo: [],
                    image: new ImageData(w, h) };
    paintAll(layer);
    return layer;
  }

  function rgbOf(id) {
    if (id === NONE) return [0, 0, 0, 0];
    const hex = r.palette[id].color;
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16), 255];
  }

  function paintPixel(layer, i) {
    const [R, G, B, A] = rgbOf(layer.ids[i]);
    const d = layer.image.data;
    d[4 * i] = R; d[4 * i + 1] = G; d[4 * i + 2] = B; d[4 * i + 3] = A;
  }

  function paintAll(layer) { for (let i = 0; i < layer.ids.length; i++) paintPixel(layer, i); }

  const current = () => r.layers[r.layer];
  const canvas = () => $("board-canvas");

  function show() {
    const layer = current();
    const c = canvas();
    if (!layer) return;
    if (c.width !== layer.w || c.height !== layer.h) { c.width = layer.w; c.height = layer.h; }
    c.getContext("2d").putImageData(layer.image, 0, 0);
    const labels = r.layer === "labels";
    c.classList.toggle("over", labels);
    $("board-painting").hidden = !labels;
    if (labels && r.painting) $("board-painting").src = r.painting.url;
    $("board").style.aspectRatio = `${layer.w} / ${layer.h}`;
    $("board").style.setProperty("--aspect", String(layer.w / layer.h));  // fits the window's height too
    $("layer-sketch").setAttribute("aria-pressed", String(!labels));
    $("layer-labels").setAttribute("aria-pressed", String(labels));
    $("undo").disabled = !layer.undo.length;
    $("redo").disabled = !layer.redo.length;
    const present = classesOf(layer);
    $("sketch-info").textContent = `${labels ? "Painting labels" : "Sketch"}: ${layer.w}×${layer.h} px · ${present.join(", ") || "nothing yet"}`;
    canvas().dataset.classes = present.join(",");
    describeLabels();
  }

  function classesOf(layer) {
    const seen = new Set(layer.ids);
    return r.palette.filter((p) => seen.has(p.id)).map((p) => p.name);
  }

  function remember(layer) {
    layer.undo.push(layer.ids.slice());
    if (layer.undo.length > HISTORY) layer.undo.shift();
    layer.redo = [];
  }

  function restore(from, to) {
    const layer = current();
    if (!layer || !layer[from].length) return;
    layer[to].push(layer.ids);
    layer.ids = layer[from].pop();
    paintAll(layer);
    show();
  }

  // ------------------------------------------------------------------ tools

  function stamp(layer, x, y) {
    const rad = r.size / 2, x0 = Math.max(0, Math.floor(x - rad)), x1 = Math.min(layer.w - 1, Math.ceil(x + rad));
    const y0 = Math.max(0, Math.floor(y - rad)), y1 = Math.min(layer.h - 1, Math.ceil(y + rad));
    for (let py = y0; py <= y1; py++) {
      for (let px = x0; px <= x1; px++) {
        const dx = px + 0.5 - x, dy = py + 0.5 - y;
        if (dx * dx + dy * dy <= Math.max(rad * rad, 0.25)) {
          const i = py * layer.w + px;
          if (layer.ids[i] !== r.cls) { layer.ids[i] = r.cls; paintPixel(layer, i); }
        }
      }
    }
  }

  function line(layer, from, to) {
    const dist = Math.hypot(to[0] - from[0], to[1] - from[1]);
    const n = Math.max(1, Math.ceil(dist / Math.max(1, r.size / 4)));
    for (let k = 1; k <= n; k++) stamp(layer, from[0] + ((to[0] - from[0]) * k) / n, from[1] + ((to[1] - from[1]) * k) / n);
  }

  function fill(layer, x, y) {
    const start = y * layer.w + x, target = layer.ids[start];
    if (target === r.cls) return;
    const stack = [start];
    while (stack.length) {
      const i = stack.pop();
      if (layer.ids[i] !== target) continue;
      layer.ids[i] = r.cls;
      paintPixel(layer, i);
      const px = i % layer.w;
      if (px > 0) stack.push(i - 1);
      if (px < layer.w - 1) stack.push(i + 1);
      if (i >= layer.w) stack.push(i - layer.w);
      if (i + layer.w < layer.ids.length) stack.push(i + layer.w);
    }
  }

  function at(event) {
    const layer = current(), rect = canvas().getBoundingClientRect();
    return [((event.clientX - rect.left) * layer.w) / rect.width, ((event.clientY - rect.top) * layer.h) / rect.height];
  }

  function down(event) {
    const layer = current();
    if (!layer || event.button !== 0) return;
    event.preventDefault();
    remember(layer);
    const p = at(event);
    if (r.tool === "fill") {
      const x = Math.min(layer.w - 1, Math.max(0, Math.floor(p[0]))), y = Math.min(layer.h - 1, Math.max(0, Math.floor(p[1])));
      fill(layer, x, y);
      show();
      return;
    }
    canvas().setPointerCapture(event.pointerId);
    r.stroke = p;
    stamp(layer, p[0], p[1]);
    show();
  }

  function move(event) {
    if (!r.stroke) return;
    const p = at(event);
    line(current(), r.stroke, p);
    r.stroke = p;
    canvas().getContext("2d").putImageData(current().image, 0, 0);
  }

  function up() { if (r.stroke) { r.stroke = null; show(); } }

  // ------------------------------------------------------------------ layers, files

  function clear() {
    const layer = current();
    if (!layer) return;
    remember(layer);
    layer.ids.fill(layer.blank);
    paintAll(layer);
    show();
  }

  function useLayer(name) {
    if (name === "labels" && !r.layers.labels) {
      if (!r.painting) { $("sketch-error").textContent = "Choose the painting first: its labels are drawn over it."; return; }
      r.layers.labels = makeLayer(r.painting.w, r.painting.h, NONE);
    }
    $("sketch-error").textContent = "";
    r.layer = name;
    show();
  }

  async function open(file, into) {
    $("sketch-error").textContent = "";
    const body = new FormData();
    body.append("file", file, file.name);
    const response = await fetch("/api/label-maps", { method: "POST", body });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) { $("sketch-error").textContent = answer.detail || `The server said ${response.status}.`; return; }
    const raw = atob(answer.ids), ids = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) ids[i] = raw.charCodeAt(i);
    const old = r.layers[into];
    if (into === "labels" && r.painting && (answer.width !== r.painting.w || answer.height !== r.painting.h)) {
      // Shown over the painting at its size; the server resizes it too (nearest neighbour) when it runs.
      $("sketch-error").textContent = `This label map is ${answer.width}×${answer.height}; the painting ${r.painting.w}×${r.painting.h}.`;
    }
    const layer = makeLayer(answer.width, answer.height, into === "sketch" ? skyId() : NONE, ids);
    if (old) layer.undo = [...old.undo];  // opening is no undo step across sizes: start its own history
    r.layers[into] = layer;
    useLayer(into);
  }

  function skyId() { const sky = r.palette.find((p) => p.name === "sky"); return sky ? sky.id : 0; }

  function pngOf(layer) {
    const c = document.createElement("canvas");
    c.width = layer.w; c.height = layer.h;
    c.getContext("2d").putImageData(layer.image, 0, 0);
    return new Promise((resolve) => c.toBlob(resolve, "image/png"));
  }

  async function download() {
    const blob = await pngOf(r.layers.sketch);
    const a = el("a", { href: URL.createObjectURL(blob), download: "sketch.png" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }

  function labelled(layer) {
    let n = 0;
    for (const id of layer.ids) if (id !== NONE) n++;
    return n;
  }

  function describeLabels() {
    const layer = r.layers.labels, status = $("labels-status");
    if (!status) return;
    if (!layer || !labelled(layer)) { status.textContent = "None: the painting is painted as a whole (plain NST)."; return; }
    const share = Math.round((100 * labelled(layer)) / layer.ids.length);
    status.textContent = share < 100 ? `Drawn: ${share}% labelled; label all of it (Fill helps).` : `Drawn: ${classesOf(layer).join(", ")}.`;
  }

  // The painting chosen in the form (or null): the label layer takes its size, capped at MAX_SIDE.
  function paintingChanged(entry) {
    if (!entry) { r.painting = null; r.layers.labels = null; if (r.layer === "labels") useLayer("sketch"); describeLabels(); return; }
    const img = new Image();
    img.onload = () => {
      const scale = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
      const w = Math.max(1, Math.round(img.naturalWidth * scale)), h = Math.max(1, Math.round(img.naturalHeight * scale));
      const changed = !r.painting || r.painting.url !== entry.url;
      r.painting = { url: entry.url, w, h };
      if (changed && r.layers.labels && (r.layers.labels.w !== w || r.layers.labels.h !== h)) r.layers.labels = null;
      if (r.layer === "labels") useLayer(r.layers.labels ? "labels" : "sketch"); else describeLabels();
    };
    img.src = entry.url;
  }

  // What a job is sent: the sketch PNG, and the label map PNG when one is drawn ({error} when not usable).
  async function files() {
    const sketch = await pngOf(r.layers.sketch);
    const layer = r.layers.labels;
    if (!layer || !labelled(layer)) return { sketch, labels: null };
    if (labelled(layer) < layer.ids.length) {
      return { error: "The painting's label map has unlabelled parts: paint or fill them, or press Remove to go without." };
    }
    return { sketch, labels: await pngOf(layer) };
  }

  function swatches() {
    $("swatches").replaceChildren(...r.palette.map((p) => el("li", {},
      el("button", { type: "button", class: "swatch", "data-class": p.name, "aria-pressed": String(p.id === r.cls),
                     title: p.name, onclick: () => pick(p.id) },
        el("span", { class: "chip", style: null, "data-color": p.color }), p.name))));
    // Colours set as properties: the page's Content-Security-Policy forbids inline style attributes.
    document.querySelectorAll("#swatches .chip").forEach((chip) => { chip.style.background = chip.dataset.color; });
  }

  function pick(id) {
    r.cls = id;
    document.querySelectorAll("#swatches .swatch").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.class === r.palette[id].name)));
  }

  function tool(name) {
    r.tool = name;
    $("tool-brush").setAttribute("aria-pressed", String(name === "brush"));
    $("tool-fill").setAttribute("aria-pressed", String(name === "fill"));
  }

  let wired = false;
  function wire() {
    if (wired) return;
    wired = true;
    const c = canvas();
    c.addEventListener("pointerdown", down);
    c.addEventListener("pointermove", move);
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
    $("tool-brush").addEventListener("click", () => tool("brush"));
    $("tool-fill").addEventListener("click", () => tool("fill"));
    $("brush-size").addEventListener("input", () => { r.size = Number($("brush-size").value); $("brush-size-out").textContent = String(r.size); });
    $("undo").addEventListener("click", () => restore("undo", "redo"));
    $("redo").addEventListener("click", () => restore("redo", "undo"));
    $("clear").addEventListener("click", clear);
    $("sketch-download").addEventListener("click", download);
    $("sketch-input").addEventListener("change", () => { const f = $("sketch-input").files[0]; if (f) open(f, "sketch"); $("sketch-input").value = ""; });
    $("labels-input").addEventListener("change", () => {
      const f = $("labels-input").files[0];
      $("labels-input").value = "";
      if (!f) return;
      if (!r.painting) { $("sketch-error").textContent = "Choose the painting first."; return; }
      open(f, "labels");
    });
    $("layer-sketch").addEventListener("click", () => useLayer("sketch"));
    $("layer-labels").addEventListener("click", () => useLayer("labels"));
    $("labels-draw").addEventListener("click", () => { useLayer("labels"); $("sketcher").scrollIntoView({ block: "nearest" }); });
    $("labels-clear").addEventListener("click", () => { r.layers.labels = null; useLayer("sketch"); });
    document.addEventListener("keydown", (e) => {
      if (!r.mode || !(e.ctrlKey || e.metaKey) || e.target.matches("input, select, textarea")) return;
      if (e.key === "z" && !e.shiftKey) { e.preventDefault(); restore("undo", "redo"); }
      if (e.key === "y" || (e.key === "Z" && e.shiftKey)) { e.preventDefault(); restore("redo", "undo"); }
    });
  }

  // The mode was chosen (its description), or another mode (null).
  function activate(mode) {
    r.mode = mode;
    $("sketcher").hidden = !mode;
    $("labels-box").hidden = !mode;
    if (!mode) return;
    wire();
    r.palette = mode.palette;
    if (!r.layers.sketch) r.layers.sketch = makeLayer(SKETCH_SIZE[0], SKETCH_SIZE[1], skyId());
    pick(r.palette.some((p) => p.name === "mountain") ? r.palette.find((p) => p.name === "mountain").id : 0);
    swatches();
    pick(r.cls);
    show();
  }

  // ------------------------------------------------------------------ a job's stages

  let shown = "";
  function renderStages(job) {
    const box = $("stages");
    const planned = job && job.mode === "recreate" && job.plan && job.plan.stages
      ? ["sketch", ...job.plan.stages, "final"] : job && job.stages && job.stages.length ? [...job.stages.filter((s) => s !== "sheet")] : [];
    box.hidden = !planned.length;
    if (!planned.length) return;
    const scores = (job.result && job.result.scores) || {};
    const key = `${job.id}:${job.status}:${job.stage}:${job.phase}:${job.stages.join(",")}:${Object.keys(scores).join(",")}`;
    if (key === shown) return;
    shown = key;
    const items = planned.map((name) => {
      const done = job.stages.includes(name);
      const score = scores[name] !== undefined ? `sky on ground ${Math.round(100 * scores[name])}%` : "";
      const waiting = job.status === "running" && job.stage === name ? (job.phase === "compiling" ? "compiling…" : "running…") : FINAL.has(job.status) ? "not run" : "waiting";
      return el("li", { class: "stage-item", "data-stage": name, "data-done": String(done) },
        done ? el("img", { src: `/api/jobs/${job.id}/stages/${name}`, alt: `${name} stage of the recreation` })
          : el("div", { class: "pending", text: waiting }),
        el("span", { class: "stage-name", text: name }),
        score ? el("span", { class: "score", text: score }) : null,
        done ? el("a", { href: `/api/jobs/${job.id}/stages/${name}?download=true`, text: "Download", "aria-label": `Download the ${name} stage` }) : null);
    });
    $("stage-list").replaceChildren(...items);
    const names = Object.keys(scores);
    $("scores").textContent = names.length
      ? `Sky-on-ground score (share of the painting's sky colours on the ground; lower is better): ${names.map((n) => `${n} ${Math.round(100 * scores[n])}%`).join(" · ")}`
      : "";
    const sheet = $("sheet-link");
    sheet.hidden = !job.stages.includes("sheet");
    sheet.href = `/api/jobs/${job.id}/sheet?download=true`;
  }

  return { activate, files, paintingChanged, renderStages };
})();
