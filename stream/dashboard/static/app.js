// vadstream dashboard: one WebSocket for status, scores, alerts and overlay frames.
// No framework and no CDN: the page must work on a machine without internet.
"use strict";

const SPANS_S = [30, 60, 120, 300, 600];   // the chart's span grows with the scores it has
const streams = new Map();         // id -> {card, points, threshold, summary, url}
const events = new Map();          // id -> event summary
const MAX_EVENTS = 500;            // as many as serve keeps
let detector = { reachable: null };
let historyS = 300;
let socket = null;
let retry = 0;
let socketUp = false;

const $ = (sel, root = document) => root.querySelector(sel);
const fmtTime = (ts) => ts == null ? "–" :
  new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
const fmtNum = (x, digits = 1) => x == null ? "–" : Number(x).toFixed(digits);
// Scores and thresholds: a probability (0.203) needs its digits, pixel sums (519.8) do not.
const fmtScore = (x) => x == null ? "–" :
  Math.abs(x) < 10 ? String(Number(Number(x).toPrecision(3))) : Number(x).toFixed(1);
const fmtAge = (s) => s == null ? "never" : s < 90 ? `${Math.round(s)} s ago` :
  `${Math.round(s / 60)} min ago`;

// -- connection ----------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { retry = 0; socketUp = true; loadEvents(); renderBanner(); };
  socket.onmessage = (msg) => {
    if (typeof msg.data === "string") onJson(JSON.parse(msg.data));
    else onOverlay(msg.data);
  };
  socket.onclose = () => {
    socketUp = false;
    renderBanner();
    setTimeout(connect, Math.min(10000, 500 * 2 ** retry++));
  };
}

function onJson(msg) {
  switch (msg.type) {
    case "hello":
      historyS = msg.history_s;
      for (const [id, points] of Object.entries(msg.scores)) {
        const s = stream(id);
        s.points = points;
        s.dirty = true;
      }
      onStatus(msg);
      break;
    case "status": onStatus(msg); break;
    case "scores": {
      const s = stream(msg.stream);
      s.points.push(...msg.points);
      const cutoff = s.points[s.points.length - 1][0] - historyS;
      let drop = 0;
      while (drop < s.points.length && s.points[drop][0] < cutoff) drop++;
      if (drop) s.points.splice(0, drop);
      s.dirty = true;
      break;
    }
    case "event": upsertEvent(msg.event, true); break;
    case "label": applyLabel(msg.id, msg.label); break;
    case "eos": {
      const s = stream(msg.stream);
      s.summary = { ...(s.summary || {}), ended: true, online: false, event_open: false };
      renderStream(s);
      break;
    }
  }
}

function onOverlay(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const blob = new Blob([new Uint8Array(buffer, 4 + n)], { type: "image/jpeg" });
  const s = stream(header.stream);
  const img = $(".overlay", s.card);
  const old = s.url;
  s.url = URL.createObjectURL(blob);
  img.src = s.url;
  // The image no longer uses the old frame (even one that never finished loading).
  if (old) URL.revokeObjectURL(old);
  img.dataset.seq = header.seq;
  img.alt = `live overlay of ${header.stream}, frame ${header.seq}`;
  $(".video", s.card).classList.add("has-frame");
}

// -- streams -------------------------------------------------------------------------------
function stream(id) {
  let s = streams.get(id);
  if (!s) {
    const card = $("#stream-template").content.firstElementChild.cloneNode(true);
    card.dataset.stream = id;
    $(".name", card).textContent = id;
    $("#streams").appendChild(card);
    $("#no-streams").hidden = true;
    s = { id, card, points: [], threshold: null, summary: null, url: null, dirty: true };
    streams.set(id, s);
    wireControls(s);
  }
  return s;
}

function onStatus(msg) {
  detector = msg.detector;
  document.body.dataset.detector = detector.reachable ? "up" : "down";
  const pill = $("#detector");
  pill.className = "pill " + (detector.reachable ? "pill-up" : "pill-down");
  pill.textContent = detector.reachable ? "detector connected" : "no detector";
  const parts = [];
  if (detector.rule) parts.push(`rule ${detector.rule} ≥ ${fmtScore(detector.threshold)}`);
  if (detector.reachable && detector.uptime_s != null)
    parts.push(`up ${Math.round(detector.uptime_s / 60)} min`);
  const rejected = Object.values(detector.rejected || {}).reduce((a, b) => a + b, 0);
  if (rejected) parts.push(`${rejected} bad message(s) refused`);
  $("#summary").textContent = parts.join(" · ");
  for (const summary of msg.streams) {
    const s = stream(summary.id);
    s.summary = summary;
    if (summary.threshold != null) s.threshold = summary.threshold;
    renderStream(s);
  }
  renderBanner();
}

function renderStream(s) {
  const sum = s.summary || {};
  const card = s.card;
  const state = $(".state", card);
  const label = sum.ended ? "ended" : sum.online ? "online" : "offline";
  state.textContent = label.toUpperCase();
  state.className = `badge state ${label}`;
  // the alerts arrive as they happen, the status once a second: either says an event is open
  const open = !sum.ended && (!!sum.event_open ||
    [...events.values()].some((e) => e.open && e.stream === s.id));
  $(".event", card).hidden = !open;
  card.classList.toggle("alarm", open);
  // drift: the median of its recent scores is where few of the calibration's normal ones were
  const drift = sum.ended ? null : sum.drift;
  const drifted = !!drift && drift.state === "drift";
  const marker = $(".drift", card);
  marker.hidden = !drifted;
  marker.title = drifted ? `scores drifted from calibration: median ${fmtScore(drift.figure)} ` +
    `of the last ${drift.frames} frames ≥ ${fmtScore(drift.limit)} (${drift.reference}); ` +
    `clears below ${fmtScore(drift.clear)}` : "";
  card.classList.toggle("drifted", drifted);
  card.classList.toggle("stale", detector.reachable === false);
  $(".clip", card).textContent = sum.clip ? `clip ${sum.clip}` : "";
  const fps = sum.fps || {};
  $(".capture", card).textContent = fmtNum(fps.capture) + " fps";
  $(".processed", card).textContent = fmtNum(fps.processed) + " fps";
  const dropped = $(".dropped", card);
  dropped.textContent = fmtNum(fps.dropped) + " fps";
  dropped.classList.toggle("warn", (fps.dropped || 0) > 0);
  $(".queue", card).textContent = sum.queue ?? "–";
  $(".latency", card).textContent = sum.latency_ms == null ? "–" : `${Math.round(sum.latency_ms)} ms`;
  $(".reconnects", card).textContent = sum.reconnects ?? "–";
  $(".scored", card).textContent = sum.scored ?? "–";
  $(".score-now", card).textContent = sum.score == null ? "" :
    `${fmtScore(sum.score)}${sum.rule ? ` (${sum.rule})` : ""}`;
  $(".events", card).textContent = sum.events ?? "–";
  renderControls(s);
}

function renderBanner() {
  const banner = $("#banner");
  if (!socketUp) {
    banner.innerHTML = "<strong>Dashboard server unreachable.</strong> Is <code>vadstream serve</code> " +
      "still running? Reconnecting by itself…";
    banner.hidden = false;
  } else if (detector.reachable === false) {
    banner.innerHTML = `<strong>No detector reachable</strong> at <code>${escapeHtml(detector.endpoint || "")}</code> ` +
      `(last status: ${fmtAge(detector.last_status_s)}). Start one with <code>vadstream detect</code> ` +
      "(or <code>vadstream demo</code>); this page picks it up by itself.";
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  for (const s of streams.values()) s.card.classList.toggle("stale", detector.reachable === false);
}

// -- chart ---------------------------------------------------------------------------------
function drawChart(s) {
  const canvas = $(".chart", s.card);
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); }
  if (canvas.height !== Math.round(h * dpr)) { canvas.height = Math.round(h * dpr); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 44, right = 8, top = 8, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  const pts = s.points;
  const end = pts.length ? pts[pts.length - 1][0] : Date.now() / 1000;
  const have = pts.length ? end - pts[0][0] : 0;
  const span = SPANS_S.find((x) => x >= Math.min(have, historyS)) || SPANS_S[SPANS_S.length - 1];
  const start = end - span;
  const shown = pts.filter((p) => p[0] >= start);
  let ymax = Math.max(s.threshold || 0, ...shown.map((p) => p[1]), 1) * 1.15;
  const x = (t) => left + (t - start) / span * pw;
  const y = (v) => top + ph - Math.max(0, v) / ymax * ph;

  ctx.font = "10px system-ui, sans-serif";
  ctx.fillStyle = "#8b95a3";
  ctx.strokeStyle = "#2a313b";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {                       // horizontal grid, score labels
    const v = ymax * i / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ctx.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(1), left - 6, yy);
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (let t = 0; t <= span; t += span / 4) {          // time axis, seconds before the last frame
    const xx = Math.round(x(end - t)) + 0.5;
    const label = t === 0 ? "now" : t >= 120 ? `-${t / 60} min` : `-${t} s`;
    ctx.fillText(label, Math.min(Math.max(xx, left + 14), left + pw - 12), top + ph + 5);
  }
  // anomalous frames: red bands, from each anomalous frame to the next frame
  ctx.fillStyle = "rgba(239, 75, 75, 0.22)";
  shown.forEach((p, i) => {
    if (!p[2]) return;
    const next = i + 1 < shown.length ? shown[i + 1][0] : p[0] + 0.1;
    ctx.fillRect(x(p[0]), top, Math.max(x(next) - x(p[0]), 1), ph);
  });
  // score line
  ctx.strokeStyle = "#4aa3ff"; ctx.lineWidth = 1.5; ctx.beginPath();
  shown.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
  ctx.stroke();
  // threshold
  if (s.threshold != null) {
    const yy = Math.round(y(s.threshold)) + 0.5;
    ctx.strokeStyle = "#ef4b4b"; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.2;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + pw, yy); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#ef4b4b"; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillText(`threshold ${fmtScore(s.threshold)}`, left + 4, yy - 2);
  }
  canvas.dataset.points = shown.length;
  canvas.dataset.threshold = s.threshold ?? "";
}

function frame() {
  for (const s of streams.values()) if (s.dirty) { s.dirty = false; drawChart(s); }
  requestAnimationFrame(frame);
}
window.addEventListener("resize", () => { for (const s of streams.values()) s.dirty = true; });

// -- alerts --------------------------------------------------------------------------------
async function loadEvents() {
  try {
    const res = await fetch("/api/events?limit=100");
    const data = await res.json();
    for (const e of data.events) upsertEvent(e, false);
  } catch (err) {
    console.warn("events not loaded", err);
  }
}

function upsertEvent(e, live) {
  const known = events.get(e.id);
  // A live alert's summary may not know a label given by the CLI or MQTT: keep the known one.
  if (!e.label && known && known.label) e.label = known.label;
  events.set(e.id, e);
  let li = document.querySelector(`li.alert[data-id="${e.id}"]`);
  if (!li) {
    li = document.createElement("li");
    li.className = "alert";
    li.dataset.id = e.id;
    li.innerHTML = `<img class="snapshot" alt="snapshot at the peak"><div><div class="what"></div>` +
      `<div class="when"></div><div class="score"></div>${LABEL_BUTTONS}</div>`;
    li.addEventListener("click", () => openEvent(e.id));
    wireLabels(li, e.id);
    if (live && !known) li.classList.add("fresh");
  }
  const img = $("img", li);
  if (img.dataset.snapshot !== e.snapshot) {
    img.dataset.snapshot = e.snapshot;
    img.dataset.retries = 0;
    img.src = e.snapshot;
    // Without an events store the peak's overlay may reach serve just after its alert.
    img.onerror = () => {
      if (+img.dataset.retries >= 5) return;
      img.dataset.retries = +img.dataset.retries + 1;
      setTimeout(() => { img.src = `${img.dataset.snapshot}&retry=${img.dataset.retries}`; }, 1000);
    };
  }
  $(".what", li).innerHTML = `${escapeHtml(e.stream)}${e.open ? ' <span class="live">LIVE</span>' : ""}`;
  const dur = e.end_ts != null ? ` (${Math.max(0, e.end_ts - e.start_ts).toFixed(1)} s)` : "";
  $(".when", li).textContent = `${fmtTime(e.start_ts)} – ${e.open ? "ongoing" : fmtTime(e.end_ts)}${dur}` +
    (e.clip ? ` · ${e.clip}` : "");
  $(".score", li).innerHTML = `peak <b>${fmtScore(e.peak_score)}</b> / threshold ${fmtScore(e.threshold)}` +
    ` · ${e.frames ?? "?"} frame(s)`;
  renderLabel(li, e);
  li.classList.toggle("open", !!e.open);
  li.classList.toggle("has-clip", !!e.clip_url);
  if (streams.has(e.stream)) renderStream(streams.get(e.stream));
  // newest first: keep the list ordered by start time
  const list = $("#alerts");
  const sorted = [...events.values()].sort((a, b) => (b.start_ts || 0) - (a.start_ts || 0));
  const index = sorted.findIndex((x) => x.id === e.id);
  const before = list.children[index];
  if (before !== li) list.insertBefore(li, before || null);
  // The server keeps the newest MAX_EVENTS too: drop the oldest from the page.
  for (const old of sorted.slice(MAX_EVENTS)) {
    events.delete(old.id);
    document.querySelector(`li.alert[data-id="${old.id}"]`)?.remove();
  }
  $("#no-alerts").hidden = events.size > 0;
  $("#alert-count").textContent = events.size;
}

// -- one event's frames ----------------------------------------------------------------------
const player = { frames: [], index: 0, timer: null };

async function openEvent(id) {
  const e = events.get(id);
  const dialog = $("#event-dialog");
  $("#event-title").textContent = `${e.stream} · event ${id.slice(0, 8)}`;
  const meta = [["start", fmtTime(e.start_ts)], ["end", e.open ? "ongoing" : fmtTime(e.end_ts)],
    ["peak score", fmtScore(e.peak_score)], ["threshold", fmtScore(e.threshold)],
    ["frames", e.frames], ["peak frame", e.peak_seq], ["clip", e.clip || "–"],
    ["boxes", (e.boxes || []).length]];
  $("#event-meta").innerHTML = meta.map(([k, v]) => `<div><dt>${k}</dt><dd>${escapeHtml(String(v))}</dd></div>`).join("");
  const labelling = $("#event-labelling");
  labelling.dataset.id = id;
  renderLabel(labelling, e);
  stopPlayer();
  player.frames = [];
  $("#event-strip").innerHTML = "";
  $("#event-frame").src = e.snapshot;
  $("#event-note").textContent = "";
  showClip(e);
  dialog.showModal();
  const data = await (await fetch(e.frames_url)).json();
  player.frames = data.frames;
  if (!player.frames.length) {
    $("#event-note").textContent = "Snapshot at the peak. " + (data.note || "");
    $("#event-slider").max = 0;
    $("#event-pos").textContent = `peak frame ${e.peak_seq}`;
    return;
  }
  const strip = $("#event-strip");
  player.frames.forEach((f, i) => {
    const t = document.createElement("img");
    t.src = f.url;
    t.loading = "lazy";
    t.title = `frame ${f.seq}, score ${fmtScore(f.score)}`;
    if (f.anomalous) t.classList.add("anomalous");
    if (f.seq === e.peak_seq) t.classList.add("peak");
    t.addEventListener("click", () => { stopPlayer(); show(i); });
    strip.appendChild(t);
  });
  $("#event-slider").max = player.frames.length - 1;
  const peak = player.frames.findIndex((f) => f.seq === e.peak_seq);
  show(Math.max(0, peak));
  $("#event-note").textContent = data.truncated ? "Only the first frames of this long event are kept." : "";
}

// The event's MP4 (written by the detector): it appears a few seconds after the event ends.
function showClip(e) {
  const video = $("#event-video");
  video.onerror = null;
  video.hidden = !e.clip_url;
  if (!e.clip_url) { video.removeAttribute("src"); video.load(); return; }
  let retries = 0;
  video.onerror = () => {
    if (retries++ >= 10 || !$("#event-dialog").open) return;
    setTimeout(() => { video.src = `${e.clip_url}?retry=${retries}`; }, 1000);
  };
  video.src = e.clip_url;
}

function show(i) {
  player.index = i;
  const f = player.frames[i];
  $("#event-frame").src = f.url;
  $("#event-slider").value = i;
  $("#event-pos").textContent = `frame ${f.seq} · score ${fmtScore(f.score)}${f.anomalous ? " · anomalous" : ""}`;
  [...$("#event-strip").children].forEach((t, j) => t.classList.toggle("current", j === i));
}

function stopPlayer() {
  clearInterval(player.timer);
  player.timer = null;
  $("#event-play").textContent = "▶";
}

$("#event-play").addEventListener("click", () => {
  if (player.timer) return stopPlayer();
  if (!player.frames.length) return;
  $("#event-play").textContent = "❚❚";
  player.timer = setInterval(() => show((player.index + 1) % player.frames.length), 100);
});
$("#event-slider").addEventListener("input", (ev) => { stopPlayer(); show(Number(ev.target.value)); });
$("#event-dialog").addEventListener("close", () => { stopPlayer(); $("#event-video").pause(); });

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// -- labels: POST /api/events/<id>/label ------------------------------------------------------
const LABEL_BUTTONS = `<div class="labelling"><span class="label-tag"></span>` +
  `<button type="button" class="label-normal" data-label="normal" title="label it normal: a false alarm">normal</button>` +
  `<button type="button" class="label-anomaly" data-label="anomaly" title="label it anomaly: a true one">anomaly</button>` +
  `<span class="label-msg"></span></div>`;

function wireLabels(container, id) {
  for (const button of container.querySelectorAll("button[data-label]")) {
    button.addEventListener("click", (ev) => {
      ev.stopPropagation();   // a click on an alert's button labels it, not opens it
      labelEvent(id ?? container.dataset.id, button.dataset.label, container);
    });
  }
}

function renderLabel(container, e) {
  const tag = $(".label-tag", container);
  tag.textContent = e.label ? `${e.label.label} · by ${e.label.who}` : "unlabelled";
  tag.dataset.label = e.label ? e.label.label : "";
  tag.title = e.label ? `labelled ${e.label.label} by ${e.label.who} (${e.label.via}) at ${fmtTime(e.label.at)}` : "";
  for (const button of container.querySelectorAll("button[data-label]")) {
    button.classList.toggle("chosen", !!e.label && e.label.label === button.dataset.label);
  }
}

async function labelEvent(id, label, container) {
  const msg = $(".label-msg", container);
  msg.textContent = "…";
  const res = await fetch(`/api/events/${encodeURIComponent(id)}/label`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ label }),
  });
  if (res.status === 401) { location.href = "/login"; return; }
  const reply = await res.json().catch(() => ({}));
  msg.textContent = res.ok ? "" : (reply.error || `error ${res.status}`);
  msg.classList.toggle("warn", !res.ok);
  if (res.ok) applyLabel(id, { label: reply.label, who: reply.who, via: reply.via, at: reply.at });
}

// A label given here or on another page (the dashboard broadcasts each one).
function applyLabel(id, label) {
  const e = events.get(id);
  if (!e) return;
  e.label = label;
  upsertEvent(e, false);
  const labelling = $("#event-labelling");
  if (labelling.dataset.id === id) renderLabel(labelling, e);
}

wireLabels($("#event-labelling"), null);

// -- live settings: POST /api/streams/<id>/threshold and /detect ----------------------------
async function postSetting(s, setting, body) {
  const msg = $(".control-msg", s.card);
  msg.textContent = "…";
  const res = await fetch(`/api/streams/${encodeURIComponent(s.id)}/${setting}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (res.status === 401) { location.href = "/login"; return; }
  const reply = await res.json().catch(() => ({}));
  msg.textContent = res.ok ? "" : (reply.error || `error ${res.status}`);
  msg.classList.toggle("warn", !res.ok);
}

function wireControls(s) {
  const form = $(".stream-settings", s.card);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $(".threshold-input", s.card).value.trim();
    postSetting(s, "threshold", { value: text === "" ? null : Number(text) });
  });
  $(".detect-input", s.card).addEventListener("change", (ev) =>
    postSetting(s, "detect", { on: ev.target.checked }));
}

function renderControls(s) {
  const settings = (s.summary || {}).settings || {};
  const input = $(".threshold-input", s.card);
  if (settings.threshold != null) input.placeholder = fmtScore(settings.threshold);
  const detect = $(".detect-input", s.card);
  if (settings.detect != null && document.activeElement !== detect) detect.checked = settings.detect;
}

setInterval(() => { $("#clock").textContent = new Date().toLocaleTimeString([], { hour12: false }); }, 1000);
connect();
requestAnimationFrame(frame);
