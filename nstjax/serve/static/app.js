/* nstjax serve: the page. Plain JavaScript, no libraries, nothing fetched from outside this server.
 *
 * The form is built from GET /api/modes (each mode lists its fields, widgets and presets), jobs are
 * created with POST /api/jobs, and every change of state arrives on one EventSource (/api/events).
 */
"use strict";

const FINAL = new Set(["done", "stopped", "failed", "lost"]);
const MODES_RETRY_MS = [500, 1000, 2000, 4000];  // waits between tries of GET /api/modes (then every 4 s)
const $ = (id) => document.getElementById(id);

const state = {
  info: null,          // GET /api/modes
  mode: null,          // the chosen mode's description
  values: {},          // field key -> current value (strings from inputs)
  edited: new Set(),   // keys the user changed from the preset
  content: null,       // {file, url}
  styles: [],          // [{file, url, share}]
  jobs: new Map(),     // id -> job (as the API shows it)
  focus: null,         // the job this page started last
  shownPreview: null,  // "id:preview" of the image on the stage
  lastStatus: new Map(),
};

// ------------------------------------------------------------------ formatting

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function num(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e4 || a < 1e-2)) return x.toExponential(2).replace("e+", "e");
  return Number(x.toPrecision(3)).toString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (v) => String(v).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}

// The plan's estimate as `nstjax stylize` prints it: " · estimate about 4:04 (2 compilations ~0:24)".
function estimateText(plan) {
  if (plan.estimate_seconds === null || plan.estimate_seconds === undefined) return "";
  const n = plan.compilations || 0;
  const compiling = n ? ` (${n} compilation${n === 1 ? "" : "s"} ~${duration(plan.compile_seconds)})` : "";
  return ` · estimate about ${duration(plan.estimate_seconds)}${compiling}`;
}

function bytes(n) {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// ------------------------------------------------------------------ the form, built from the mode's fields

function presetValues() {
  const presets = state.mode.presets;
  const name = state.values.preset || "auto";
  return presets[name] || presets.auto || {};
}

function fieldDefault(field) {
  if (field.key === "preset") return "auto";
  let v = presetValues()[field.key];
  if (v === undefined || v === null) v = field.default; // modes without presets declare their defaults
  return v === undefined || v === null ? "" : String(v);
}

function isRecreate() { return !!state.mode && state.mode.name === "recreate"; }

function hasPresets() { return state.mode.fields.some((f) => f.key === "preset"); }

function buildForm() {
  const basic = $("fields-basic"), advanced = $("fields-advanced");
  basic.replaceChildren();
  advanced.replaceChildren();
  for (const field of state.mode.fields) {
    if (field.widget === "style-weights") continue; // drawn beside the style thumbnails
    const node = buildField(field);
    (field.group === "basic" ? basic : advanced).append(node);
  }
  $("mode-help").textContent = state.mode.description;
  // A mode that takes no style images (a network trained for one painting) hides their drop zone.
  const noStyles = state.mode.inputs.styles.max === 0;
  $("styles-drop").hidden = noStyles;
  if (noStyles) { state.styles.forEach((s) => URL.revokeObjectURL(s.url)); state.styles = []; drawPictures(); }
  // Recreate: the sketch is drawn on the board (no content upload), one painting, its label map optional.
  const recreate = isRecreate();
  $("content-drop").hidden = recreate;
  document.querySelector("#styles-drop .drop-title").textContent = recreate ? "Painting" : "Style images";
  $("styles-hint").textContent = recreate ? "Drop the painting whose style to take, or choose it" : "Drop one or more paintings, or choose them";
  $("styles-input").multiple = !recreate;
  if (recreate && state.styles.length > 1) { state.styles.splice(1).forEach((s) => URL.revokeObjectURL(s.url)); drawPictures(); }
  Recreate.activate(recreate ? state.mode : null);
  resetValues();
}

function buildField(field) {
  const id = `f-${field.key}`;
  const wrap = el("div", { class: "field", "data-key": field.key });
  const helpId = field.help ? `${id}-help` : null;
  const label = el("label", { for: id }, el("span", { text: field.label }), el("span", { class: "edited", hidden: true, text: "edited" }));
  wrap.append(label);

  const note = (input) => {
    input.addEventListener("input", () => {
      state.values[field.key] = input.value;
      markEdited(field.key);
      if (field.key === "preset") resetValues(true);
    });
  };

  if (field.widget === "select" || field.type === "choice") {
    const select = el("select", { id, name: field.key, "aria-describedby": helpId });
    if (field.key !== "preset" && !(field.key in (state.mode.presets.auto || {})) && field.default === undefined) {
      const label = field.key === "weights" ? `server default (${state.info.default_weights})` : "default";
      select.append(el("option", { value: "", text: label }));
    }
    for (const choice of field.choices) {
      let text = choice;
      if (field.key === "preset" && choice === "auto") text = `auto (${state.mode.auto_preset} here)`;
      select.append(el("option", { value: choice, text }));
    }
    note(select);
    wrap.append(select);
  } else if (field.widget === "range" || field.widget === "log-range") {
    const log = field.widget === "log-range";
    const range = el("input", {
      type: "range", id: `${id}-range`, min: field.min ?? 0, max: field.max ?? 100,
      step: log ? 0.05 : field.step ?? 1, "aria-label": `${field.label} slider`,
      "aria-describedby": helpId,
    });
    const box = el("input", { type: "number", id, name: field.key, step: log ? "any" : field.step ?? "any", min: log ? 0 : field.min, max: log ? null : field.max, "aria-describedby": helpId });
    range.addEventListener("input", () => {
      let v = Number(range.value);
      if (log) v = field.zero && v <= Number(field.min) ? 0 : Number((10 ** v).toPrecision(2));
      box.value = String(v);
      state.values[field.key] = box.value;
      markEdited(field.key);
    });
    box.addEventListener("input", () => {
      state.values[field.key] = box.value;
      syncRange(field, range, box.value);
      markEdited(field.key);
    });
    wrap.append(el("div", { class: "range-row" }, range, box));
  } else {
    const isNum = field.widget === "number";
    const input = el("input", {
      type: isNum ? "number" : "text", id, name: field.key, step: isNum ? field.step ?? "any" : null,
      min: isNum ? field.min : null, placeholder: field.placeholder || null, "aria-describedby": helpId,
      autocomplete: "off", spellcheck: "false",
    });
    note(input);
    wrap.append(input);
  }
  if (field.help) wrap.append(el("p", { class: "help", id: helpId, text: field.help }));
  return wrap;
}

function syncRange(field, range, value) {
  let v = Number(value);
  if (!Number.isFinite(v)) return;
  if (field.widget === "log-range") v = v <= 0 ? Number(field.min) : Math.log10(v);
  range.value = String(v);
}

function markEdited(key) {
  const field = state.mode.fields.find((f) => f.key === key);
  const changed = key !== "preset" && String(state.values[key] ?? "") !== fieldDefault(field);
  if (changed) state.edited.add(key); else state.edited.delete(key);
  const tag = document.querySelector(`.field[data-key="${key}"] .edited`);
  if (tag) tag.hidden = !changed;
}

// Fill every field from the preset (keeping the preset choice itself when `keepPreset`).
function resetValues(keepPreset = false) {
  const preset = keepPreset ? state.values.preset : "auto";
  state.values = { preset };
  state.edited.clear();
  for (const field of state.mode.fields) {
    if (field.widget === "style-weights") continue;
    const value = field.key === "preset" ? preset : fieldDefault(field);
    state.values[field.key] = value;
    const input = $(`f-${field.key}`);
    if (input) input.value = value;
    const range = $(`f-${field.key}-range`);
    if (range) syncRange(field, range, value);
    const tag = document.querySelector(`.field[data-key="${field.key}"] .edited`);
    if (tag) tag.hidden = true;
  }
}

// The settings a job is sent with: the preset, and only what the user changed.
function collectSettings() {
  const settings = hasPresets() ? { preset: state.values.preset || "auto" } : {};
  for (const key of state.edited) {
    const field = state.mode.fields.find((f) => f.key === key);
    const raw = String(state.values[key] ?? "").trim();
    if (raw === "") continue;
    if (field.type === "int") settings[key] = Math.round(Number(raw));
    else if (field.type === "float") settings[key] = Number(raw);
    else settings[key] = raw;
  }
  if (state.styles.length > 1) {
    const shares = state.styles.map((s) => s.share);
    if (new Set(shares).size > 1) settings.style_blend = shares.map((s) => Math.max(s, 0) / 100).join(",");
  }
  return settings;
}

// ------------------------------------------------------------------ pictures

function addFiles(role, files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(png|jpe?g|webp|tiff?|bmp|gif)$/i.test(f.name));
  if (!images.length) return setError("Those files are not images.");
  setError("");
  if (role === "content") {
    if (state.content) URL.revokeObjectURL(state.content.url);
    state.content = { file: images[0], url: URL.createObjectURL(images[0]) };
  } else {
    const max = state.mode ? (isRecreate() ? 1 : state.mode.inputs.styles.max) : 8;
    for (const file of images) {
      if (state.styles.length >= max) { setError(`At most ${max} style images.`); break; }
      state.styles.push({ file, url: URL.createObjectURL(file), share: 50 });
    }
  }
  drawPictures();
}

function thumb(entry, what, onRemove, extra) {
  const img = el("img", { src: entry.url, alt: `${what}: ${entry.file.name}` });
  img.addEventListener("error", () => img.replaceWith(el("span", { class: "noimg", text: "no preview" })));
  return el("li", { class: "thumb" },
    img,
    el("div", { class: "row" },
      el("span", { class: "fname", title: entry.file.name, text: entry.file.name }),
      el("button", { type: "button", class: "icon-button", "aria-label": `Remove ${entry.file.name}`, onclick: onRemove, text: "✕" })),
    extra || el("span", { class: "small", text: bytes(entry.file.size) }));
}

function drawPictures() {
  const contentList = $("content-thumbs");
  contentList.replaceChildren();
  if (state.content) {
    contentList.append(thumb(state.content, "Content photo", () => { URL.revokeObjectURL(state.content.url); state.content = null; drawPictures(); }));
  }
  $("content-drop").classList.toggle("has-files", !!state.content);

  const list = $("styles-thumbs");
  list.replaceChildren();
  const several = state.styles.length > 1;
  const total = state.styles.reduce((a, s) => a + Math.max(s.share, 0), 0) || 1;
  state.styles.forEach((entry, i) => {
    let extra = null;
    if (several) {
      const share = el("span", { class: "share", text: `${Math.round((100 * entry.share) / total)}%` });
      const range = el("input", {
        type: "range", min: 0, max: 100, step: 1, value: entry.share,
        "aria-label": `Blend share of ${entry.file.name}`,
      });
      range.addEventListener("input", () => {
        entry.share = Number(range.value);
        const sum = state.styles.reduce((a, s) => a + Math.max(s.share, 0), 0) || 1;
        list.querySelectorAll(".share").forEach((node, k) => { node.textContent = `${Math.round((100 * state.styles[k].share) / sum)}%`; });
      });
      extra = el("div", { class: "row" }, range, share);
    }
    list.append(thumb(entry, `Style image ${i + 1}`, () => { URL.revokeObjectURL(entry.url); state.styles.splice(i, 1); drawPictures(); }, extra));
  });
  $("blend-hint").hidden = !several;
  $("styles-drop").classList.toggle("has-files", state.styles.length > 0);
  if (isRecreate()) Recreate.paintingChanged(state.styles[0] || null);
}

function wireDrop(zone, input, role) {
  input.addEventListener("change", () => { addFiles(role, input.files); input.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "dragend"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(role, e.dataTransfer.files);
  });
}

function setError(text) { $("form-error").textContent = text; }

// What a job uploads: [role, file or blob, name]; recreate sends the board's sketch (and label map) as PNGs.
async function uploads() {
  if (isRecreate()) {
    if (!state.styles.length) return { error: "Choose the painting first." };
    const drawn = await Recreate.files();
    if (drawn.error) return drawn;
    const list = [["content", drawn.sketch, "sketch.png"], ["styles", state.styles[0].file, state.styles[0].file.name]];
    if (drawn.labels) list.push(["styles", drawn.labels, "painting_labels.png"]);
    return { list };
  }
  if (!state.content) return { error: "Choose a content photo first." };
  if (state.styles.length < state.mode.inputs.styles.min) return { error: "Choose at least one style image." };
  return { list: [["content", state.content.file, state.content.file.name], ...state.styles.map((s) => ["styles", s.file, s.file.name])] };
}

async function submit(event) {
  event.preventDefault();
  const chosen = await uploads();
  if (chosen.error) return setError(chosen.error);
  const size = chosen.list.reduce((a, [, f]) => a + f.size, 0);
  const limit = state.info.limits.max_upload_bytes;
  if (size > limit) return setError(`These pictures are ${bytes(size)}; this server takes ${bytes(limit)} at most.`);
  setError("");
  const body = new FormData();
  body.append("mode", state.mode.name);
  for (const [role, file, name] of chosen.list) body.append(role, file, name);
  body.append("settings", JSON.stringify(collectSettings()));
  const button = $("start");
  button.disabled = true;
  button.textContent = "Uploading…";
  try {
    const response = await fetch("/api/jobs", { method: "POST", body });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(answer.detail) ? answer.detail.map((d) => d.msg).join("; ") : answer.detail;
      setError(detail || `The server said ${response.status}.`);
      return;
    }
    state.focus = answer.id;
    upsert([answer]);
    announce(answer.queue_position ? `Job queued, position ${answer.queue_position}.` : "Job started.");
  } catch (err) {
    setError(`Could not reach the server (${err.message}).`);
  } finally {
    button.disabled = false;
    button.textContent = "Start";
  }
}

// ------------------------------------------------------------------ jobs: state from the event stream

function upsert(list) {
  for (const job of list) {
    const old = state.jobs.get(job.id);
    if (!old || job.version >= old.version) state.jobs.set(job.id, job);
  }
  render();
}

function stageJob() {
  const jobs = [...state.jobs.values()];
  const focus = state.jobs.get(state.focus);
  if (focus && !FINAL.has(focus.status)) return focus;
  const running = jobs.find((j) => j.status === "running");
  if (running) return running;
  if (focus) return focus;
  const finished = jobs.filter((j) => FINAL.has(j.status));
  return finished.length ? finished[finished.length - 1] : null;
}

function announce(text) { $("announce").textContent = text; }

function describeStatus(job) {
  if (job.status === "queued") return job.queue_position ? `Waiting: ${job.queue_position} ahead` : "Waiting";
  if (job.status === "running") {
    // The server's phase: loading the inputs and weights, compiling (the first step, a new scale or stage), running.
    if (job.phase === "loading") return "Starting (loading)…";
    if (job.phase === "compiling") return `Compiling${job.stage ? ` the ${job.stage} stage` : job.step ? " the next scale" : ""}… (once per size; not stuck)`;
    return "Running";
  }
  if (job.status === "done") return `Done in ${duration(job.seconds)}`;
  if (job.status === "stopped") return job.has_image ? "Stopped: kept the best image" : "Stopped before it ran";
  if (job.status === "lost") return "Lost: the server stopped before it finished";
  return `Failed: ${job.error}`;
}

function renderStage() {
  const job = stageJob();
  const stage = document.querySelector(".stage");
  const badge = $("stage-status");
  const img = $("preview");
  stage.classList.toggle("running", !!job && job.status === "running");
  if (!job) {
    badge.dataset.status = "idle"; badge.textContent = "idle";
    $("stop").disabled = true; $("download").hidden = true;
    Recreate.renderStages(null);
    return;
  }
  Recreate.renderStages(job);
  badge.dataset.status = job.status;
  badge.textContent = job.status;

  // Announce changes of status (not every step: a screen reader would drown).
  const before = state.lastStatus.get(job.id);
  if (before !== job.status) {
    state.lastStatus.set(job.id, job.status);
    if (before !== undefined || job.status !== "queued") announce(describeStatus(job));
  }

  // The stage shows this job's image once it has one; until then (and while it loads) a line that matches the
  // badge, never the placeholder of an earlier state (no "Starting…" under a DONE badge).
  const key = `${job.id}:${job.preview}`;
  if (job.has_image && state.shownPreview !== key) {
    state.shownPreview = key;
    const next = new Image();
    next.onload = () => {
      if (state.shownPreview !== key) return;
      img.src = next.src;
      img.classList.toggle("tiny", next.naturalWidth < 128);  // blocky pixels beat a blur at 64 px
      img.hidden = false;
      img.dataset.preview = String(job.preview);
      img.dataset.job = job.id;
      $("empty").hidden = true;
    };
    next.onerror = () => {  // e.g. the preview was replaced by the result meanwhile: try again shortly
      if (state.shownPreview !== key) return;
      state.shownPreview = null;
      setTimeout(renderStage, 500);
    };
    next.src = `/api/jobs/${job.id}/image?v=${job.preview}`;
  }
  if (img.dataset.job !== job.id || img.hidden) {
    img.hidden = true;
    $("empty").hidden = false;
    const line = job.has_image ? (FINAL.has(job.status) ? "Loading the result…" : "Loading the preview…") : describeStatus(job);
    if ($("empty").textContent !== line) $("empty").replaceChildren(el("p", { text: line }));
  }
  const names = [job.inputs.content, ...(job.inputs.styles || [])];
  img.alt = `${job.status === "running" ? "Current best image" : "Result"}: ${names[0]} in the style of ${names.slice(1).join(" and ")}`;

  const progress = $("progress");
  progress.max = job.steps || 1;
  progress.value = FINAL.has(job.status) && job.status === "done" ? progress.max : job.step || 0;
  progress.setAttribute("aria-valuetext", job.steps ? `step ${job.step} of ${job.steps}` : describeStatus(job));

  const stats = $("stats");
  stats.replaceChildren();
  const sep = () => el("span", { class: "sep", "aria-hidden": "true", text: "·" });
  const bits = [el("span", { text: describeStatus(job) })];
  if (job.steps && job.status !== "queued") bits.push(el("span", {}, el("span", { class: "k", text: "step " }), `${job.step} / ${job.steps}`));
  if (job.stage) bits.push(el("span", {}, el("span", { class: "k", text: "stage " }), job.stage));
  if (job.scales > 1) bits.push(el("span", {}, el("span", { class: "k", text: "scale " }), `${job.scale}/${job.scales}`));
  if (job.loss !== null && job.loss !== undefined) bits.push(el("span", {}, el("span", { class: "k", text: "loss " }), num(job.loss)));
  for (const [k, v] of Object.entries(job.terms || {})) bits.push(el("span", {}, el("span", { class: "k", text: `${k} ` }), num(v)));
  if (job.status === "running" && job.eta_seconds !== null && job.eta_seconds !== undefined) bits.push(el("span", {}, el("span", { class: "k", text: "about " }), `${duration(job.eta_seconds)} left`));
  bits.forEach((b, i) => { if (i) stats.append(sep()); stats.append(b); });

  const plan = job.plan;
  $("plan").textContent = plan
    ? `${plan.shapes.map(([h, w]) => `${w}×${h}`).join(" → ")} px · ${plan.steps.join("+")} steps · ${plan.device} · weights: ${plan.weights}${estimateText(plan)}`
    : "";
  const notes = (job.notes || []).join(" ");
  $("notes").textContent = notes;
  $("notes").title = notes;  // the line is clamped by the style sheet; the whole text on hover

  $("stop").disabled = FINAL.has(job.status);
  $("stop").dataset.job = job.id;
  const download = $("download");
  download.hidden = !(job.has_image && FINAL.has(job.status));
  download.href = `/api/jobs/${job.id}/image?download=true`;
}

function renderQueue() {
  const waiting = [...state.jobs.values()].filter((j) => j.status === "queued");
  $("queue-wrap").hidden = !waiting.length;
  $("queue").replaceChildren(...waiting.map((job) => el("li", {},
    el("img", { src: `/api/jobs/${job.id}/inputs/0`, alt: "" }),
    el("span", { class: "what", text: `${job.inputs.content} × ${(job.inputs.styles || []).join(", ")}` }),
    el("button", { type: "button", class: "icon-button", "aria-label": `Cancel the job for ${job.inputs.content}`, onclick: () => stop(job.id), text: "Cancel" }))));
}

function chips(job) {
  const s = job.settings || {};
  const items = [];
  const add = (k, v) => items.push(el("li", {}, `${k} `, el("b", { text: v })));
  add("mode", job.mode);
  add("preset", s.preset || "auto");
  const r = job.result;
  if (r && r.size) add("size", `${r.size[1]}×${r.size[0]}`);
  else if (s.size) add("size", s.size);
  if (r) add("steps", r.steps);
  for (const [k, v] of Object.entries(s)) {
    if (["preset", "size", "steps"].includes(k) || (k === "weights" && r && r.weights)) continue;
    add(k.replace(/_/g, " "), typeof v === "number" ? num(v) : v);
  }
  if (r && r.weights) add("weights", r.weights);
  if (r && r.seconds !== undefined) add("time", duration(r.seconds));
  return el("ul", { class: "chips", "aria-label": "Settings" }, items);
}

function card(job) {
  const names = [job.inputs.content, ...(job.inputs.styles || [])];
  const art = el("div", { class: "art" });
  if (job.has_image) {
    art.append(el("img", {
      src: `/api/jobs/${job.id}/image?v=${job.preview}`, loading: "lazy",
      alt: `Result: ${names[0]} in the style of ${names.slice(1).join(" and ")}`,
    }));
  } else {
    const why = { failed: "No image: the job failed.", lost: "No image: the server stopped before the job finished." };
    art.append(el("p", { class: "failed", text: why[job.status] || "No image: stopped before it ran." }));
  }
  const inputs = el("div", { class: "inputs", "aria-label": "Inputs" },
    el("img", { src: `/api/jobs/${job.id}/inputs/0`, alt: `Content: ${names[0]}`, title: names[0], loading: "lazy" }),
    el("span", { class: "plus", "aria-hidden": "true", text: "×" }),
    ...names.slice(1).map((n, i) => el("img", { src: `/api/jobs/${job.id}/inputs/${i + 1}`, alt: `Style: ${n}`, title: n, loading: "lazy" })));
  const body = el("div", { class: "body" },
    el("div", { class: "head" }, el("span", { class: "badge", "data-status": job.status, text: job.status }), el("span", { class: "when", text: when(job.finished || job.created) })),
    inputs,
    chips(job),
    job.error ? el("p", { class: "err", text: job.error, title: job.error }) : null,
    ...(job.notes || []).map((n) => el("p", { class: "note", text: n, title: n })),
    job.has_image ? el("p", { class: "links" },
      el("a", { href: `/api/jobs/${job.id}/image?download=true`, download: `nstjax-${job.mode}-${job.id.slice(0, 8)}.png`, text: "Download PNG" }),
      el("a", { href: `/api/jobs/${job.id}/image`, target: "_blank", rel: "noopener", text: "Open" }),
      (job.stages || []).includes("sheet") ? el("a", { href: `/api/jobs/${job.id}/sheet?download=true`, text: "Sheet" }) : null) : null);
  return el("li", { class: "card", "data-job": job.id, "data-status": job.status }, art, body);
}

function renderGallery() {
  const finished = [...state.jobs.values()].filter((j) => FINAL.has(j.status)).reverse();
  const gallery = $("gallery");
  const have = new Map([...gallery.children].map((li) => [li.dataset.job, li]));
  const nodes = finished.map((job) => {
    const old = have.get(job.id);
    if (old && old.dataset.version === String(job.version)) return old;
    const node = card(job);
    node.dataset.version = String(job.version);
    return node;
  });
  gallery.replaceChildren(...nodes);
  $("gallery-empty").hidden = finished.length > 0;
}

function render() {
  renderStage();
  renderQueue();
  renderGallery();
}

async function stop(id) {
  const response = await fetch(`/api/jobs/${id}`, { method: "DELETE" });
  if (response.ok) upsert([await response.json()]);
}

function listen() {
  const connection = $("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { connection.dataset.state = "live"; connection.textContent = "live"; });
  source.addEventListener("jobs", (e) => upsert(JSON.parse(e.data)));
  source.addEventListener("error", () => { connection.dataset.state = "lost"; connection.textContent = "reconnecting…"; });
}

// ------------------------------------------------------------------ start

// GET /api/modes until it answers; meanwhile the Mode list says "Loading…" and Start waits.
async function loadModes() {
  const status = $("modes-status");
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch("/api/modes", { cache: "no-store" });
      if (!response.ok) throw new Error(`the server said ${response.status}`);
      status.textContent = "";
      return await response.json();
    } catch (err) {
      const wait = MODES_RETRY_MS[Math.min(attempt, MODES_RETRY_MS.length - 1)];
      status.textContent = `Waiting for the server (${err.message}); trying again in ${Math.round(wait / 1000) || 1} s…`;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

async function main() {
  wireDrop($("content-drop"), $("content-input"), "content");
  wireDrop($("styles-drop"), $("styles-input"), "styles");
  $("job-form").addEventListener("submit", submit);
  $("reset").addEventListener("click", () => { if (state.mode) resetValues(); });
  $("stop").addEventListener("click", () => { const id = $("stop").dataset.job; if (id) stop(id); });
  listen();  // the jobs and the gallery do not wait for the form

  state.info = await loadModes();
  const select = $("mode");
  select.replaceChildren(...state.info.modes.map((mode) => el("option", { value: mode.name, text: mode.title })));
  select.disabled = state.info.modes.length < 2;
  select.addEventListener("change", () => { state.mode = state.info.modes.find((m) => m.name === select.value); buildForm(); });
  state.mode = state.info.modes[0];
  $("device").textContent = state.info.device;
  buildForm();
  $("start").disabled = false;
  $("start").textContent = "Start";
  document.body.dataset.ready = "true";
}

main().catch((err) => setError(`The page could not start: ${err.message}`));
