// multiworld view: the page. Plain JS, no build step, no framework, no outside resources.
// Everything that comes from the store (ids, names, event fields) is put into the page as text,
// never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const MARK_TYPES = ["push", "pickup", "reward", "end"]; // one row each; anything else: "other"
const BASE_FPS = 10;

const app = {
  store: null, // /api/store
  route: null,
  worlds: [], // descriptions of the world(s) shown: [A] or [A, B], each with .track and .marks once loaded
  panes: [],
  compare: null,
  step: 0,
  start: 0,
  stop: 1,
  playing: false,
  psnr: null, // Float64Array over [start, stop), NaN until loaded
  generation: 0, // bumped on every route change; stale async work checks it
};

// ------------------------------------------------------------------ small helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      message = (await res.json()).error || message;
    } catch (e) {
      /* not JSON */
    }
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return res;
}

async function json(path, options) {
  return (await api(path, options)).json();
}

async function bitmap(path) {
  const blob = await (await api(path)).blob();
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function worldHref(id, step) {
  return `#/world/${encodeURIComponent(id)}` + (step == null ? "" : `?t=${step}`);
}

function shortHash(h) {
  return h ? h.slice(0, 8) : "";
}

function fmtCreated(s) {
  return s ? s.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC") : "";
}

function clamp(v, lo, hi) {
  return Math.max(lo, Math.min(hi, v));
}

// ------------------------------------------------------------------ routing
function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const t = params.has("t") ? parseInt(params.get("t"), 10) : null;
  if (parts[0] === "world" && parts.length === 2) return { view: "world", ids: [parts[1]], t };
  if (parts[0] === "compare" && parts.length === 3) return { view: "compare", ids: [parts[1], parts[2]], t };
  return { view: "list", scenario: params.get("scenario") || "" };
}

async function onRoute() {
  const route = parseRoute();
  const gen = ++app.generation;
  app.tracksLoaded = false;
  app.worlds = [];
  app.panes = [];
  pause();
  showError("");
  document.body.dataset.ready = "";
  try {
    app.store = await json("/api/store");
    if (gen !== app.generation) return;
    renderHeader();
    if (route.view === "list") renderList(route);
    else await openWorlds(route, gen);
  } catch (e) {
    if (gen === app.generation) showError(e.message);
  }
}

function renderHeader() {
  $("store-url").textContent = app.store.store;
  $("store-mode").textContent = app.store.read_only ? "read-only" : "forks allowed";
}

// ------------------------------------------------------------------ the world list
function renderList(route) {
  $("world-view").hidden = true;
  $("list-view").hidden = false;
  document.title = "multiworld view";
  const select = $("scenario-filter");
  select.replaceChildren(el("option", { value: "", text: "all" }));
  for (const s of app.store.scenarios) select.append(el("option", { value: s, text: s }));
  select.value = app.store.scenarios.includes(route.scenario) ? route.scenario : "";
  const worlds = app.store.worlds.filter((w) => !select.value || w.scenario === select.value);
  $("world-count").textContent = `${worlds.length} of ${app.store.worlds.length} worlds, newest first`;

  const body = $("worlds").tBodies[0];
  body.replaceChildren();
  for (const w of worlds) {
    const link = el("a", { href: worldHref(w.id), text: w.id });
    const ckpt = w.checkpoint ? `${shortHash(w.checkpoint)}${w.checkpoint_name ? " (" + w.checkpoint_name + ")" : ""}` : "";
    const parent = w.parent
      ? el("a", { href: worldHref(w.parent.world, w.parent.step), text: `${w.parent.world} @ ${w.parent.step}` })
      : "";
    const cells = [link, w.scenario, w.seed == null ? "" : String(w.seed), String(w.steps), String(w.agents),
      w.backend, ckpt, w.views || "none", parent, fmtCreated(w.created)];
    const row = el("tr", { "data-world": w.id });
    for (const c of cells) row.append(el("td", {}, c));
    if (w.views_note) row.title = w.views_note;
    body.append(row);
  }

  // The fork tree: roots are worlds without a (shown) parent; children sorted by fork step.
  const shown = new Set(worlds.map((w) => w.id));
  const children = new Map();
  for (const w of worlds) {
    const p = w.parent && shown.has(w.parent.world) ? w.parent.world : null;
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(w);
  }
  const byStep = (a, b) => (a.parent ? a.parent.step : 0) - (b.parent ? b.parent.step : 0) || a.id.localeCompare(b.id);
  const build = (parentId, depth) => {
    const list = el("ul", { class: depth ? "" : "tree-root" });
    for (const w of (children.get(parentId) || []).slice().sort(byStep)) {
      const label = w.parent ? ` forked at step ${w.parent.step}` : "";
      const item = el("li", { "data-world": w.id, "data-depth": String(depth) },
        el("a", { href: worldHref(w.id), text: w.id }),
        el("span", { class: "muted", text: `${label} · ${w.steps} steps · ${w.backend}` }));
      if (children.has(w.id) && depth < 64) item.append(build(w.id, depth + 1));
      list.append(item);
    }
    return list;
  };
  const roots = (children.get(null) || []).slice().sort((a, b) => a.id.localeCompare(b.id));
  children.set(null, roots);
  $("fork-tree").replaceChildren(...build(null, 0).children);
  document.body.dataset.ready = "list";
}

// ------------------------------------------------------------------ one or two worlds
async function openWorlds(route, gen) {
  const ids = route.ids.map(encodeURIComponent);
  const q = route.view === "compare" ? new URLSearchParams({ a: route.ids[0], b: route.ids[1] }) : null;
  const [worlds, compare] = await Promise.all([
    Promise.all(ids.map((id) => json(`/api/worlds/${id}`))),
    q ? json(`/api/compare?${q}`) : null,
  ]);
  if (gen !== app.generation) return;
  app.worlds = worlds;
  app.compare = compare;
  const a = worlds[0];
  app.start = compare ? compare.start : 0;
  app.stop = compare ? Math.max(compare.stop, compare.start + 1) : a.steps;
  $("list-view").hidden = true;
  $("world-view").hidden = false;
  document.title = compare ? `${a.id} vs ${worlds[1].id}` : `${a.id} · multiworld view`;
  renderTitle();
  app.panes = worlds.map((w) => new Pane(w));
  $("panes").replaceChildren(...app.panes.map((p) => p.root));
  $("panes").classList.toggle("two", worlds.length > 1);
  const scrubber = $("scrubber");
  scrubber.min = String(app.start);
  scrubber.max = String(app.stop - 1);
  app.psnr = null;
  $("psnr-wrap").hidden = !compare;
  $("psnr-label").textContent = "";
  $("legend").replaceChildren();
  returnsBase = null;
  clearCanvas($("marks"));
  clearCanvas($("returns-plot"));
  const t = route.t == null || Number.isNaN(route.t) ? app.start : clamp(route.t, app.start, app.stop - 1);
  // The first step's images are asked for at once; the per-step data of the whole world (poses
  // for the trails, returns, marks) arrives beside them.
  setStep(t, { initial: true });
  await Promise.all(
    worlds.map(async (w, i) => {
      const [track, marks] = await Promise.all([
        api(`/api/worlds/${ids[i]}/track`).then((r) => r.arrayBuffer()),
        json(`/api/worlds/${ids[i]}/marks`),
      ]);
      if (gen !== app.generation) return;
      w.track = parseTrack(track, w);
      w.marks = marks;
    }),
  );
  if (gen !== app.generation) return;
  app.marks = Object.fromEntries(worlds.map((w) => [w.id, w.marks.marks]));
  app.eventSteps = [...new Set(Object.values(a.marks.marks).flat())].sort((x, y) => x - y);
  drawMarks();
  renderLegend();
  drawReturnsBase();
  drawReturns();
  for (const pane of app.panes) pane.drawMap();
  app.tracksLoaded = true;
  markShown();
  if (compare) loadPsnr(gen);
}

function parseTrack(buffer, world) {
  const [steps, agents] = new Uint32Array(buffer, 0, 2);
  const poses = new Float32Array(buffer, 8, steps * agents * 3);
  const returns = [];
  for (let i = 0; i < agents; i++) returns.push(new Float32Array(buffer, 8 + 4 * (steps * agents * 3 + i * steps), steps));
  world.steps_loaded = steps;
  return { steps, agents, poses, returns };
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

function renderTitle() {
  const [a, b] = app.worlds;
  const title = $("world-title");
  const note = $("world-note");
  if (!b) {
    title.textContent = a.id;
    const bits = [a.scenario, `seed ${a.seed}`, `${a.steps} steps`, `${a.agents} agents`, a.backend];
    if (a.checkpoint) bits.push(`checkpoint ${shortHash(a.checkpoint)}${a.checkpoint_name ? " (" + a.checkpoint_name + ")" : ""}`);
    if (a.parent) bits.push(`fork of ${a.parent.world} at step ${a.parent.step}`);
    if (a.children.length) bits.push(`${a.children.length} fork${a.children.length > 1 ? "s" : ""}`);
    $("world-meta").textContent = bits.join(" · ");
    note.textContent = a.views_note || "";
    note.hidden = !a.views_note;
  } else {
    title.replaceChildren(el("a", { href: worldHref(a.id), text: a.id }), " vs ", el("a", { href: worldHref(b.id), text: b.id }));
    const c = app.compare;
    const bits = [`steps ${c.start}..${c.stop - 1}`];
    if (c.shared_steps) bits.push(`rows 0..${c.shared_steps - 1} shared`);
    bits.push(c.actions_differ_at == null ? "same actions" : `actions differ from step ${c.actions_differ_at}`);
    $("world-meta").textContent = bits.join(" · ");
    note.textContent = c.psnr_problem ? `No PSNR: ${c.psnr_problem}` : "";
    note.hidden = !c.psnr_problem;
  }
  // The compare menu: the parent, the forks, worlds of the same seed.
  const select = $("compare-select");
  select.replaceChildren(el("option", { value: "", text: b ? "(back to one world)" : "(choose a world)" }));
  for (const c of a.compare) {
    const label = c.relation === "parent" ? `parent ${c.id} (fork at ${c.step})`
      : c.relation === "fork" ? `fork ${c.id} (at ${c.step})` : `${c.id} (${c.relation})`;
    select.append(el("option", { value: c.id, text: label }));
  }
  select.value = b ? b.id : "";
  // The fork button exists only on a writable store and when one world is shown.
  const existing = $("fork-button");
  if (app.store.read_only) {
    if (existing) existing.remove();
  } else if (existing) {
    existing.hidden = Boolean(b);
  }
}

class Pane {
  constructor(world) {
    this.world = world;
    this.loading = false;
    this.pending = null;
    this.shown = null;
    this.bitmaps = null;
    const head = el("div", { class: "pane-head" }, el("a", { href: worldHref(world.id), text: world.id }),
      el("span", { class: "muted", text: ` ${world.backend} · ${world.views || "no views"}` }));
    this.views = el("div", { class: "views" });
    this.canvases = [];
    const { height, width } = world.frame;
    if (world.views) {
      world.agent_names.forEach((name, i) => {
        const canvas = el("canvas", { class: "view", width, height, "data-agent": String(i) });
        this.canvases.push(canvas);
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = world.colors[i];
        this.views.append(el("figure", { class: "agent-view" }, canvas, el("figcaption", {}, swatch, name)));
      });
    } else {
      this.views.append(el("p", { class: "note", text: world.views_note || "no views" }));
    }
    const side = world.map_px * 2;
    this.map = el("canvas", { class: "map", width: side, height: side });
    const mapWrap = el("figure", { class: "map-wrap" }, this.map, el("figcaption", { text: "map, trails" }));
    this.root = el("div", { class: "pane", "data-world": world.id }, head, el("div", { class: "pane-body" }, this.views, mapWrap));
  }

  request(t) {
    if (this.loading) {
      this.pending = t;
      return;
    }
    this.loading = true;
    this.load(t)
      .catch((e) => showError(`${this.world.id}, step ${t}: ${e.message}`))
      .finally(() => {
        this.loading = false;
        const next = this.pending;
        this.pending = null;
        if (next != null && next !== this.shown) this.request(next);
        else markShown();
      });
  }

  async load(t) {
    const id = encodeURIComponent(this.world.id);
    const jobs = [bitmap(`/api/worlds/${id}/map/${t}.png`)];
    if (this.canvases.length) jobs.push(bitmap(`/api/worlds/${id}/views/${t}.png`));
    const [map, views] = await Promise.all(jobs);
    if (this.world !== app.worlds.find((w) => w.id === this.world.id)) return; // page changed meanwhile
    if (views) {
      const { height, width } = this.world.frame;
      this.canvases.forEach((canvas, i) => {
        const ctx = canvas.getContext("2d");
        ctx.imageSmoothingEnabled = false;
        ctx.clearRect(0, 0, width, height);
        ctx.drawImage(views, i * width, 0, width, height, 0, 0, width, height);
      });
      views.close();
    }
    if (this.bitmaps) this.bitmaps.close();
    this.bitmaps = map;
    this.shown = t;
    this.drawMap();
  }

  drawMap() {
    if (!this.bitmaps || this.shown == null) return;
    const w = this.world;
    const ctx = this.map.getContext("2d");
    const side = this.map.width;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.bitmaps, 0, 0, side, side);
    if (!w.track) return;
    const scale = side / w.size;
    const n = w.agents;
    const trail = parseInt($("trail").value, 10);
    const t = Math.min(this.shown, w.track.steps - 1);
    const poses = w.track.poses;
    const from = trail < 0 ? 0 : Math.max(0, t - trail);
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (let i = 0; i < n; i++) {
      ctx.strokeStyle = w.colors[i];
      ctx.globalAlpha = 0.85;
      ctx.beginPath();
      for (let s = from; s <= t; s++) {
        const k = (s * n + i) * 3;
        const x = poses[k] * scale;
        const y = poses[k + 1] * scale;
        if (s === from) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }
}

function markShown() {
  if (app.panes.length && app.panes.every((p) => p.shown === app.step && !p.loading)) {
    document.body.dataset.shownStep = String(app.step);
    if (!document.body.dataset.ready && app.tracksLoaded) {
      document.body.dataset.ready = app.compare ? `compare:${app.worlds[0].id}:${app.worlds[1].id}` : `world:${app.worlds[0].id}`;
    }
  }
}

// ------------------------------------------------------------------ the timeline
function markType(type) {
  return MARK_TYPES.includes(type) ? type : "other";
}

const MARK_COLOURS = { push: "#e8590c", pickup: "#f2b705", reward: "#2f9e44", end: "#c92a2a", other: "#868e96" };
const MARK_ROW = 7; // pixels per kind of mark

function markX(step, width) {
  const span = Math.max(1, app.stop - 1 - app.start);
  return ((step - app.start) / span) * (width - 1);
}

function drawMarks() {
  // One mark per (world, step, kind), kinds in rows (a world per block of rows in a comparison).
  // Drawn once on a canvas: tens of thousands of marks cost nothing when the cursor moves.
  const canvas = $("marks");
  const kinds = [...MARK_TYPES, "other"];
  const width = Math.round(canvas.clientWidth || 800);
  canvas.width = width;
  canvas.height = kinds.length * MARK_ROW * app.worlds.length;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const span = Math.max(1, app.stop - 1 - app.start);
  const w = Math.max(2, width / span);
  app.worlds.forEach((world, wi) => {
    kinds.forEach((kind, ki) => {
      ctx.fillStyle = MARK_COLOURS[kind];
      const y = (wi * kinds.length + ki) * MARK_ROW + 1;
      for (const step of world.marks.marks[kind] || []) {
        if (step < app.start || step >= app.stop) continue;
        ctx.fillRect(Math.round(markX(step, width) - w / 2), y, Math.ceil(w), MARK_ROW - 2);
      }
    });
  });
  updateCursor();
}

function renderLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  // Counts over the whole of each world (a comparison: first world / second world).
  for (const type of [...MARK_TYPES, "other"]) {
    const counts = app.worlds.map((w) => w.marks.counts[type] || 0);
    if (type === "other" && !counts.some(Boolean)) continue;
    const unit = type === "reward" || type === "end" ? (counts.every((c) => c === 1) ? " step" : " steps") : "";
    legend.append(el("span", { class: `legend-item mark-${type}`, text: `${type} (${counts.join(" / ")}${unit})` }));
  }
  if (app.worlds.length > 1) legend.append(el("span", { class: "muted", text: `top rows ${app.worlds[0].id}, bottom rows ${app.worlds[1].id}` }));
}

function updateCursor() {
  const canvas = $("marks");
  const x = markX(app.step, canvas.clientWidth || canvas.width);
  $("marks-cursor").style.transform = `translateX(${x}px)`;
}

function setStep(t, opts = {}) {
  t = clamp(Math.round(t), app.start, app.stop - 1);
  if (t === app.step && !opts.initial) return;
  app.step = t;
  $("scrubber").value = String(t);
  $("step-label").textContent = `step ${t} / ${app.stop - 1}`;
  updateCursor();
  renderEvents();
  drawReturns();
  drawPsnr();
  for (const pane of app.panes) pane.request(t);
  scheduleUrl();
}

// The step goes into the URL (reload and links keep it), at most every 200 ms while scrubbing.
let urlTimer = null;
function scheduleUrl() {
  if (urlTimer != null) return;
  urlTimer = setTimeout(() => {
    urlTimer = null;
    const path = location.hash.split("?")[0] || "#/";
    if (parseRoute().view !== "list") history.replaceState(null, "", `${path}?t=${app.step}`);
  }, 200);
}

function eventText(ev) {
  const rest = Object.fromEntries(Object.entries(ev).filter(([k]) => !["type", "step", "agent"].includes(k)));
  switch (ev.type) {
    case "push":
      return `${ev.agent} pushed box ${ev.box} from ${JSON.stringify(ev.from)} to ${JSON.stringify(ev.to)}`;
    case "pickup":
      return `${ev.agent} picked up item ${ev.item}`;
    case "reward":
      return Object.entries(ev.rewards || {}).map(([a, r]) => `${a} ${r > 0 ? "+" : ""}${r}`).join(", ");
    case "end": {
      const parts = [];
      if (ev.terminated && ev.terminated.length) parts.push(`terminated: ${ev.terminated.join(", ")}`);
      if (ev.truncated && ev.truncated.length) parts.push(`truncated: ${ev.truncated.join(", ")}`);
      return parts.join("; ");
    }
    default:
      return `${ev.agent ? ev.agent + " " : ""}${JSON.stringify(rest)}`;
  }
}

let eventsWanted = null;
let eventsLoading = false;

async function renderEvents() {
  // The events listed are the current step's, asked for as the step changes (the latest wins).
  eventsWanted = app.step;
  if (eventsLoading) return;
  eventsLoading = true;
  try {
    while (eventsWanted != null) {
      const t = eventsWanted;
      const gen = app.generation;
      eventsWanted = null;
      const lists = await Promise.all(
        app.worlds.map((w) => {
          const q = new URLSearchParams({ start: t, stop: t + 1 });
          return json(`/api/worlds/${encodeURIComponent(w.id)}/events?${q}`).then((r) => [w, r.events]);
        }),
      );
      if (gen !== app.generation || eventsWanted != null) continue;
      $("events-step").textContent = String(t);
      const list = $("events-list");
      list.replaceChildren();
      for (const [w, events] of lists) {
        for (const ev of events) {
          const label = el("span", { class: `ev-type mark-${markType(ev.type)}`, text: String(ev.type) });
          const who = app.worlds.length > 1 ? el("span", { class: "muted", text: `${w.id}: ` }) : "";
          list.append(el("li", { "data-type": String(ev.type) }, label, " ", who, eventText(ev)));
        }
      }
      if (!list.children.length) list.append(el("li", { class: "muted", text: "none" }));
      list.dataset.step = String(t);
    }
  } catch (e) {
    showError(`events: ${e.message}`);
  } finally {
    eventsLoading = false;
  }
}

function jumpEvent(direction) {
  const steps = (app.eventSteps || []).filter((s) => s >= app.start && s < app.stop);
  const target = direction > 0 ? steps.find((s) => s > app.step) : steps.reverse().find((s) => s < app.step);
  if (target != null) setStep(target);
}

// ------------------------------------------------------------------ plots
function plotArea(canvas) {
  const width = canvas.clientWidth || 600;
  if (canvas.width !== Math.round(width)) canvas.width = Math.round(width);
  return { ctx: canvas.getContext("2d"), w: canvas.width, h: canvas.height, left: 40, right: 8, top: 8, bottom: 16 };
}

function xOf(area, step) {
  const span = Math.max(1, app.stop - 1 - app.start);
  return area.left + ((step - app.start) / span) * (area.w - area.left - area.right);
}

function drawAxes(area, lo, hi, unit) {
  const { ctx, w, h } = area;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#d0d4da";
  ctx.fillStyle = "#667";
  ctx.font = "10px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const v of [lo, (lo + hi) / 2, hi]) {
    const y = yOf(area, v, lo, hi);
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(w - area.right, y);
    ctx.stroke();
    ctx.fillText(`${+v.toFixed(2)}${unit}`, 2, y + 3);
  }
}

function yOf(area, v, lo, hi) {
  const span = hi - lo || 1;
  return area.top + (1 - (v - lo) / span) * (area.h - area.top - area.bottom);
}

let returnsBase = null;

function drawReturnsBase() {
  const canvas = $("returns-plot");
  const area = plotArea(canvas);
  let lo = 0;
  let hi = 0;
  if (!app.worlds.every((w) => w.track)) return;
  for (const w of app.worlds) {
    for (const r of w.track.returns) {
      for (let s = app.start; s < Math.min(app.stop, r.length); s++) {
        lo = Math.min(lo, r[s]);
        hi = Math.max(hi, r[s]);
      }
    }
  }
  if (hi - lo < 1e-9) hi = lo + 1;
  drawAxes(area, lo, hi, "");
  const { ctx } = area;
  app.worlds.forEach((w, wi) => {
    ctx.setLineDash(wi ? [4, 3] : []);
    w.track.returns.forEach((r, i) => {
      ctx.strokeStyle = w.colors[i];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      const stride = Math.max(1, Math.floor((app.stop - app.start) / (area.w * 2)));
      for (let s = app.start; s < Math.min(app.stop, r.length); s += stride) {
        const x = xOf(area, s);
        const y = yOf(area, r[s], lo, hi);
        if (s === app.start) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
      ctx.stroke();
    });
  });
  ctx.setLineDash([]);
  returnsBase = { image: ctx.getImageData(0, 0, area.w, area.h), area };
}

function drawCursor(area) {
  const { ctx, h } = area;
  const x = xOf(area, app.step);
  ctx.strokeStyle = "#222";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x, 0);
  ctx.lineTo(x, h);
  ctx.stroke();
}

function drawReturns() {
  if (!returnsBase) return;
  const { ctx } = returnsBase.area;
  ctx.putImageData(returnsBase.image, 0, 0);
  drawCursor(returnsBase.area);
}

async function loadPsnr(gen) {
  const c = app.compare;
  if (c.psnr_problem) return;
  const n = app.stop - app.start;
  app.psnr = new Float64Array(n).fill(NaN);
  const chunk = 256;
  // The steps around the current one first, then the rest from the start.
  const order = [];
  for (let lo = app.start; lo < app.stop; lo += chunk) order.push(lo);
  const near = order.findIndex((lo) => app.step >= lo && app.step < lo + chunk);
  if (near > 0) order.unshift(...order.splice(near, 1));
  for (const lo of order) {
    if (gen !== app.generation) return;
    const hi = Math.min(app.stop, lo + chunk);
    const q = new URLSearchParams({ a: c.a.id, b: c.b.id, start: lo, stop: hi });
    try {
      const res = await json(`/api/psnr?${q}`);
      if (gen !== app.generation) return;
      res.psnr.forEach((v, k) => {
        app.psnr[res.start - app.start + k] = v;
      });
    } catch (e) {
      showError(`PSNR: ${e.message}`);
      return;
    }
    drawPsnr();
  }
  document.body.dataset.psnrLoaded = "1";
}

function drawPsnr() {
  if (!app.compare) return;
  const canvas = $("psnr-plot");
  const area = plotArea(canvas);
  const cap = 50; // identical views (100 dB) are drawn at the top
  drawAxes(area, 0, cap, " dB");
  const { ctx } = area;
  const label = $("psnr-label");
  if (app.psnr) {
    ctx.strokeStyle = "#3b5bdb";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    for (let k = 0; k < app.psnr.length; k++) {
      const v = app.psnr[k];
      if (Number.isNaN(v)) {
        drawing = false;
        continue;
      }
      const x = xOf(area, app.start + k);
      const y = yOf(area, Math.min(v, cap), 0, cap);
      if (drawing) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      drawing = true;
    }
    ctx.stroke();
    const v = app.psnr[app.step - app.start];
    label.textContent = Number.isNaN(v) ? "PSNR …" : v >= 100 ? "PSNR: identical" : `PSNR ${v.toFixed(1)} dB`;
  }
  drawCursor(area);
}

// ------------------------------------------------------------------ play, keys, fork
function play() {
  if (app.step >= app.stop - 1) setStep(app.start);
  app.playing = true;
  $("play").textContent = "\u23F8";
  let last = performance.now();
  let carry = 0;
  const tick = (now) => {
    if (!app.playing) return;
    carry += ((now - last) / 1000) * BASE_FPS * parseFloat($("speed").value);
    last = now;
    if (carry >= 1) {
      const advance = Math.floor(carry);
      carry -= advance;
      if (app.step + advance >= app.stop - 1) {
        setStep(app.stop - 1);
        pause();
        return;
      }
      setStep(app.step + advance);
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function pause() {
  app.playing = false;
  $("play").textContent = "\u25B6";
}

function onKey(e) {
  if ($("world-view").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = e.target.tagName;
  if (tag === "SELECT" || (tag === "INPUT" && e.target.id !== "scrubber")) return;
  const big = e.shiftKey ? 10 : 1;
  const moves = {
    ArrowRight: big,
    ArrowLeft: -big,
    ArrowUp: big,
    ArrowDown: -big,
    PageDown: 100,
    PageUp: -100,
  };
  if (e.key in moves) setStep(app.step + moves[e.key]);
  else if (e.key === "Home") setStep(app.start);
  else if (e.key === "End") setStep(app.stop - 1);
  else if (e.key === " ") (app.playing ? pause : play)();
  else if (e.key === "n") jumpEvent(1);
  else if (e.key === "p") jumpEvent(-1);
  else return;
  e.preventDefault();
}

async function forkHere() {
  const w = app.worlds[0];
  const button = $("fork-button");
  button.disabled = true;
  try {
    const res = await json(`/api/worlds/${encodeURIComponent(w.id)}/fork`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ step: app.step }),
    });
    location.hash = worldHref(res.id, res.step);
  } catch (e) {
    showError(`fork: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

function init() {
  window.addEventListener("hashchange", onRoute);
  document.addEventListener("keydown", onKey);
  $("scrubber").addEventListener("input", (e) => setStep(parseInt(e.target.value, 10)));
  $("play").addEventListener("click", () => (app.playing ? pause() : play()));
  $("prev-event").addEventListener("click", () => jumpEvent(-1));
  $("next-event").addEventListener("click", () => jumpEvent(1));
  $("trail").addEventListener("change", () => app.panes.forEach((p) => p.drawMap()));
  // After picking a speed or a trail the keys drive the timeline again.
  for (const id of ["speed", "trail"]) $(id).addEventListener("change", (e) => e.target.blur());
  $("fork-button").addEventListener("click", forkHere);
  $("marks").addEventListener("click", (e) => {
    // The step under the pointer, or the nearest marked step within 4 pixels.
    const box = e.currentTarget.getBoundingClientRect();
    const x = e.clientX - box.left;
    let best = app.start + (x / Math.max(1, box.width - 1)) * Math.max(1, app.stop - 1 - app.start);
    let bestDist = 4;
    for (const s of app.eventSteps || []) {
      const d = Math.abs(markX(s, box.width) - x);
      if (d <= bestDist) {
        bestDist = d;
        best = s;
      }
    }
    setStep(best);
  });
  $("scenario-filter").addEventListener("change", (e) => {
    location.hash = e.target.value ? `#/?scenario=${encodeURIComponent(e.target.value)}` : "#/";
  });
  $("compare-select").addEventListener("change", (e) => {
    const a = app.worlds[0].id;
    location.hash = e.target.value
      ? `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(e.target.value)}?t=${app.step}`
      : worldHref(a, app.step);
  });
  window.addEventListener("resize", () => {
    if (!$("world-view").hidden && app.tracksLoaded) {
      drawMarks();
      drawReturnsBase();
      drawReturns();
      drawPsnr();
    }
  });
  onRoute();
}

init();
