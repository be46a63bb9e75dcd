// The owner's app: live rings, police requests with signed consent, grants, the audit log,
// linked devices. Plain DOM (no framework); all outside text goes in via textContent.
import { Transport, PREFIX } from "./transport.js";
import { neutralise, fmtTime, fmtDuration } from "./text.js";
import { verifyOwnerView, checkPin, pinOf } from "./audit.js";
import { loadKeys, saveKeys, forgetKeys, generateKeys, signMessage, signingBytes, fingerprint } from "./keys.js";
import { normaliseCode, pairSecrets, offerMessage } from "./pairing.js";
import { randomHex, canonical } from "./canonical.js";
import { ClipIndex, clipsView, thumbImg, buildRelease, sealed, isSealedAnnouncement } from "./clips.js";
import { h } from "./dom.js";
import { sharesSection, unshareText, shareCard } from "./shares.js";
import { CodeShow } from "./showcode.js";

const CLIP_RE = /^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$/;
const TOKEN_RE = /^[A-Za-z0-9_-]{6,64}$/;
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const state = {
  t: null, ownerId: null, keys: null, config: {},
  devices: new Map(), events: [], requests: new Map(), grants: new Map(), linked: new Map(), shares: new Map(),
  pending: null, // {kind, ...} the confirmation being shown
  clipIndex: null, deviceKeys: null, // sealed clips: this browser's own index; devices' registered keys
};
// Exposed for the test harness and the benchmark: when each event was drawn (ms since epoch).
const shown = {};
window.__doorbell = { shown, state };
// The pure functions, for the interop tests (same bytes as doorbell/core/signing.py and auditchain.py).
Object.assign(window.__doorbell, { canonical, signingBytes, verifyOwnerView, neutralise, sealed });

// ------------------------------------------------------------------ DOM helpers
const $ = (sel) => document.querySelector(sel);
const main = () => $("#main");

function toast(text, kind = "info") {
  const el = $("#toast");
  el.textContent = text;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

function setConn(text, ok) {
  const el = $("#conn");
  el.textContent = text;
  el.className = `conn ${ok ? "ok" : "bad"}`;
}

function field(label, value, cls) {
  return h("div", { class: `field ${cls || ""}` }, h("dt", { text: label }), h("dd", { text: value }));
}

// ------------------------------------------------------------------ session
async function loadConfig() {
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) state.config = await r.json();
  } catch { /* a static host without config.json: the login form asks */ }
}

function loginView(error) {
  const c = state.config;
  const saved = JSON.parse(sessionStorage.getItem("doorbell.session") || "null") || {};
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("h2", { id: "login-title", text: "Sign in to your doorbell" }),
    h("p", { class: "muted", text: "This app's own broker login, as `doorbell provision owner-login` gave it to you. The password stays in this tab only." }),
    h("label", { for: "broker" }, "Broker address"),
    h("input", { id: "broker", name: "broker", type: "url", required: true, value: saved.url || c.broker_url || "", placeholder: "wss://mqtt.example.org:8884/", autocomplete: "url" }),
    h("label", { for: "login" }, "Broker login (yours, for this app: owner.name)"),
    h("input", { id: "login", name: "login", required: true, value: saved.login || c.login || "", autocomplete: "username",
      placeholder: c.owner_id ? `${c.owner_id}.web` : "alice.web" }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", required: true, autocomplete: "current-password" }),
    error ? h("p", { class: "error", role: "alert", text: error }) : null,
    h("button", { type: "submit", class: "primary", text: "Sign in" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const url = form.broker.value.trim(), login = form.login.value.trim(), password = form.password.value;
    // Each app has a broker login of its own, OWNER.NAME (`doorbell provision owner-login`): the broker
    // binds a session to its login, so the app and the CLI must not share one.
    const ownerId = login.split(".")[0];
    if (!ID_RE.test(ownerId)) return render(loginView("A login is your owner id, a dot and a name, like alice.web."));
    try {
      await start({ url, login, ownerId, password });
      sessionStorage.setItem("doorbell.session", JSON.stringify({ url, login, ownerId, password }));
    } catch (err) {
      render(loginView(err.message));
    }
  });
  return form;
}

async function start({ url, login, ownerId, password }) {
  setConn("Connecting…", false);
  const t = new Transport({ url, username: login || ownerId, password, ownerId, holdAck: keepAnnouncement });
  // keys, clip index and handlers first: a resumed session delivers its queued clip announcements at once
  state.ownerId = ownerId;
  state.keys = await loadKeys(ownerId);
  await startClips(ownerId);
  t.addEventListener("message", (e) => onMessage(e.detail));
  await t.connect();
  state.t = t;
  t.addEventListener("status", (e) => setConn(e.detail === "online" ? `Connected as ${ownerId}` : `Connection: ${e.detail}`, e.detail === "online"));
  setConn(`Connected as ${ownerId}`, true);
  await t.subscribe(`${PREFIX}/devices/+/status`, 0); // live only: QoS 0 is not queued while the app is closed
  await t.subscribe(`${PREFIX}/devices/+/events`, 0);
  await t.subscribe(`${PREFIX}/devices/+/snapshot`, 0);
  await t.subscribe(`${PREFIX}/devices/+/clips`, 1); // queued for this browser's clip index (persistent session)
  await t.subscribe(`${t.owner}/#`);
  $("#nav").hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = sessionStorage.getItem("doorbell.pairCode") ? "#/devices" : "#/live";
  render();
  refreshLists().catch((err) => toast(err.message, "bad"));
}

async function refreshLists() {
  // The service's own lists complete the retained messages (a broker that lost them, or expiry).
  const [reqList, grantList, shareList] = await Promise.all([
    state.t.rpc("requests", { state: "pending", limit: 500 }), state.t.rpc("grants", { limit: 500 }),
    state.t.rpc("shares", { limit: 500 })]);
  for (const sh of shareList.shares || []) state.shares.set(sh.share_id, { ...(state.shares.get(sh.share_id) || {}), ...sh });
  const reqs = reqList.requests || [], grants = grantList.grants || [];
  for (const r of reqs) if (!state.requests.has(r.request_id)) state.requests.set(r.request_id, { ...r, clips: r.clip_ids.map((c) => ({ clip_id: c })) });
  for (const g of grants) state.grants.set(g.grant_id, { ...(state.grants.get(g.grant_id) || {}), ...g });
  updateBadge();
  if (["requests", "grants"].includes(route().name) && !state.pending) render(); // never under an open confirmation
}

// ------------------------------------------------------------------ incoming
const decoder = new TextDecoder();

function onMessage({ topic, payload, retain }) {
  const parts = topic.split("/");
  try {
    if (parts[2] === "devices" && parts[4] === "clips" && ID_RE.test(parts[3] || "")) return onClipAnnouncement(parts[3], payload);
    if (parts[2] === "devices" && ID_RE.test(parts[3] || "")) return onDevice(parts[3], parts[4], payload, retain);
    if (parts[2] !== "owners" || parts[3] !== state.ownerId) return;
    const kind = parts[4], id = parts[5];
    if (!payload.length || !TOKEN_RE.test(id || "")) return;
    if (kind === "requests" && parts.length === 6) {
      const msg = JSON.parse(decoder.decode(payload));
      if (msg.state) state.requests.delete(id); else state.requests.set(id, msg);
      updateBadge();
      // the list follows; an open request is redrawn only when it closed (never under the owner's choices)
      const r = route();
      if (r.name === "requests" && (!r.id || (r.id === id && msg.state))) { state.pending = null; render(); }
    } else if (kind === "grants" && parts.length === 6) {
      state.grants.set(id, { ...(state.grants.get(id) || {}), ...JSON.parse(decoder.decode(payload)) });
      if (route().name === "grants") render();
    } else if (kind === "shares" && parts.length === 6) {
      state.shares.set(id, { ...(state.shares.get(id) || {}), ...JSON.parse(decoder.decode(payload)) });
      if (route().name === "grants" && !state.pending) render();
    } else if (kind === "pair" && parts.length === 6 && state.showing) {
      state.showing.offer(id, payload).catch((err) => console.warn("pairing offer", err));
    } else if (kind === "keys" && parts.length === 6) {
      const k = JSON.parse(decoder.decode(payload));
      state.linked.set(id, k);
      onKeyState(k);
      if (route().name === "devices") render();
    }
  } catch (err) {
    console.warn("dropped message on", topic, err);
  }
}

function onDevice(deviceId, kind, payload, retain) {
  const dev = state.devices.get(deviceId) || { id: deviceId, status: "unknown", snapshot: null, last: null, privacy: null };
  state.devices.set(deviceId, dev);
  if (kind === "status") {
    const s = decoder.decode(payload);
    if (s === "online" || s === "offline") dev.status = s;
  } else if (kind === "snapshot") {
    if (payload.length > 3 && payload[0] === 0xff && payload[1] === 0xd8 && payload[2] === 0xff) {
      if (dev.snapshot) URL.revokeObjectURL(dev.snapshot);
      dev.snapshot = URL.createObjectURL(new Blob([payload], { type: "image/jpeg" }));
      dev.snapshotAt = Date.now() / 1000;
    }
  } else if (kind === "events") {
    const ev = JSON.parse(decoder.decode(payload));
    if (ev.device_id !== deviceId || typeof ev.type !== "string") return;
    if (ev.type === "privacy_mode") dev.privacy = !!ev.enabled;
    dev.last = ev;
    state.events.unshift(ev);
    state.events.length = Math.min(state.events.length, 50);
  }
  if (route().name === "live") renderLive(); // cheap, keeps the ring path short
  if (kind === "events") {
    const ev = state.events[0];
    shown[ev.event_id] = performance.timeOrigin + performance.now(); // drawn (DOM updated): the benchmark's end
    // sound and notification after the screen: an AudioContext can take long to start the first time
    if (ev.type === "ring" || ev.type === "motion_start") setTimeout(() => alertEvent(ev, retain), 0);
  }
}

let audioCtx = null;
function chime() {
  try {
    audioCtx = audioCtx || new AudioContext();
    const o = audioCtx.createOscillator(), g = audioCtx.createGain();
    o.frequency.value = 880; g.gain.value = 0.15;
    o.connect(g).connect(audioCtx.destination);
    o.start(); o.frequency.setValueAtTime(660, audioCtx.currentTime + 0.25); o.stop(audioCtx.currentTime + 0.6);
  } catch { /* no audio device */ }
}

function alertEvent(ev, retain) {
  if (retain || ev.late) return;
  const what = ev.type === "ring" ? "Someone rang" : "Motion";
  if (ev.type === "ring") chime();
  if ("Notification" in window && Notification.permission === "granted") {
    try { new Notification(`${what} at ${neutralise(ev.device_id, 64)}`, { body: fmtTime(ev.ts), tag: ev.event_id }); } catch { /* mobile needs the SW */ }
  }
}

function updateBadge() {
  const n = state.requests.size;
  $("#req-count").textContent = n ? String(n) : "";
}

// ------------------------------------------------------------------ routing
// A pairing link from `doorbell owner link --app-url` (#/link/CODE): keep the code for the form.
function takePairingLink() {
  const m = /^#\/link\/([0-9A-Za-z-]{10,11})$/.exec(location.hash || "");
  if (!m) return;
  sessionStorage.setItem("doorbell.pairCode", m[1]);
  history.replaceState(null, "", "#/devices");
}

function route() {
  const [, name = "live", id] = (location.hash || "#/live").split("/");
  return { name, id: id ? decodeURIComponent(id) : null };
}

function render(view) {
  const m = main();
  m.replaceChildren();
  if (view) { m.append(view); return; }
  if (!state.t) { m.append(loginView()); return; }
  const r = route();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${r.name}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const views = { live: liveView, requests: r.id ? () => requestView(r.id) : requestsView, grants: grantsView, audit: auditView, devices: devicesView,
    clips: () => clipsView(clipsCtx(), r.id) };
  m.append((views[r.name] || liveView)());
  updateBadge();
}

window.addEventListener("hashchange", () => { takePairingLink(); state.pending = null; render(); main().focus(); });

// ------------------------------------------------------------------ live
function renderLive() {
  const el = $("#live");
  if (el) el.replaceWith(liveView()); else if (route().name === "live" && state.t) render();
}

function liveView() {
  const devs = [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id));
  const ring = state.events.find((e) => e.type === "ring");
  return h("section", { id: "live", "aria-labelledby": "live-title" },
    h("h2", { id: "live-title", text: "Live" }),
    ring ? h("p", { class: "ring-banner", "data-event-id": ring.event_id, role: "status" },
      `Ring at ${neutralise(ring.device_id, 64)}, ${fmtTime(ring.ts)}`) : null,
    "Notification" in window && Notification.permission === "default"
      ? h("button", { type: "button", onclick: () => Notification.requestPermission().then(renderLive), text: "Allow notifications for rings" }) : null,
    devs.length ? h("div", { class: "devices" }, devs.map(deviceCard)) : h("p", { class: "muted", text: "No device has reported yet." }),
    h("h3", { text: "Recent events" }),
    state.events.length ? h("ol", { class: "events" }, state.events.map((e) =>
      h("li", { class: `ev ev-${e.type}`, "data-event-id": e.event_id },
        h("time", { text: fmtTime(e.ts) }), " ", h("strong", { text: labelOf(e) }), " ", neutralise(e.device_id, 64),
        e.late ? h("span", { class: "muted", text: " (late: after an outage)" }) : null)))
      : h("p", { class: "muted", text: "Nothing since you opened the app." }));
}

function labelOf(e) {
  return { ring: "RING", motion_start: "motion", motion_end: "motion ended", privacy_mode: e.enabled ? "privacy mode on" : "privacy mode off",
    storage_warning: "storage warning", command_result: "command result", snapshot: "snapshot" }[e.type] || neutralise(e.type, 32);
}

function deviceCard(d) {
  const name = neutralise(d.id, 64);
  return h("article", { class: `device ${d.status}`, "aria-label": `Device ${name}` },
    h("h3", {}, name, " ", h("span", { class: `pill ${d.status}`, text: d.status })),
    d.snapshot ? h("img", { src: d.snapshot, alt: `Latest snapshot from ${name}`, width: 320, height: 180 }) : h("div", { class: "nosnap", text: "No snapshot yet" }),
    d.last ? h("p", { class: "muted", text: `Last: ${labelOf(d.last)} ${fmtTime(d.last.ts)}` }) : null,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => command(d.id, "snapshot", {}), text: "Snapshot now" }),
      h("button", { type: "button", "aria-pressed": d.privacy ? "true" : "false", onclick: () => command(d.id, "privacy", { enabled: !d.privacy }),
        text: d.privacy ? "Privacy mode: on" : "Privacy mode: off" })));
}

async function command(deviceId, name, extra) {
  try {
    await state.t.publish(`${PREFIX}/devices/${deviceId}/commands/${name}`, JSON.stringify({ v: 1, command_id: randomHex(16), ...extra }));
    toast(name === "snapshot" ? "Snapshot requested" : `Privacy mode ${extra.enabled ? "on" : "off"} requested`);
  } catch (err) { toast(err.message, "bad"); }
}

// ------------------------------------------------------------------ police requests
function requestsView() {
  const reqs = [...state.requests.values()].sort((a, b) => a.created_at - b.created_at);
  return h("section", { "aria-labelledby": "req-title" },
    h("h2", { id: "req-title", text: "Police requests" }),
    reqs.length ? h("ul", { class: "cards" }, reqs.map((r) => h("li", { class: "card" },
      h("h3", {}, h("a", { href: `#/requests/${encodeURIComponent(r.request_id)}`, text: `${neutralise(r.agency, 200)}: case ${neutralise(r.case_number, 100)}` })),
      h("p", { text: `${requestClips(r).length} of your clips match · answer by ${fmtTime(r.expires_at)} (no answer = no)` }))))
      : h("p", { class: "muted", text: "No pending police requests." }));
}

function areaSvg(r) {
  if (typeof r.radius_m !== "number") return h("p", { class: "muted", text: "Area: not sent by this service version." });
  // A circle with a scale bar; no map tiles (nothing about the owner's view leaves the app).
  const W = 240, R = 80, metresPerPx = r.radius_m / R;
  const nice = [50, 100, 200, 250, 500, 1000].filter((m) => m / metresPerPx <= 110).pop() || r.radius_m;
  const bar = nice / metresPerPx;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${W}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "area");
  const title = `Requested area: a circle of radius ${Math.round(r.radius_m)} m around ${r.lat.toFixed(3)}, ${r.lon.toFixed(3)}`;
  svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); };
  add("circle", { cx: W / 2, cy: 110, r: R, class: "area-circle" });
  add("circle", { cx: W / 2, cy: 110, r: 3, class: "area-centre" });
  add("line", { x1: 20, y1: 220, x2: 20 + bar, y2: 220, class: "scale" });
  add("text", { x: 20, y: 212, class: "scale-text" }, `${nice} m`);
  add("text", { x: W / 2, y: 20, "text-anchor": "middle", class: "scale-text" }, `radius ${Math.round(r.radius_m)} m`);
  return h("figure", {}, svg, h("figcaption", { text: title }));
}

function clipLine(c) {
  if (c.started_at === undefined) return c.clip_id;
  return `${c.clip_id}  ${neutralise(c.device_id, 64)}  ${c.trigger}  ${fmtTime(c.started_at)} (${fmtDuration(c.ended_at - c.started_at)})`;
}

function requestView(rid) {
  const r = state.requests.get(rid);
  if (!r) return h("section", {}, h("h2", { text: "Request" }), h("p", { text: "This request is no longer pending (decided, expired, or not yours)." }), h("a", { href: "#/requests", text: "Back to requests" }));
  const clips = requestClips(r);
  const days = Math.max(1, Math.min(30, Math.round(r.grant_days || 7)));
  const form = h("form", { class: "card", "aria-labelledby": "rq-title" },
    h("h2", { id: "rq-title", text: `Request from ${neutralise(r.agency, 200)}` }),
    h("dl", { class: "facts" },
      field("Agency", neutralise(r.agency, 200)), field("Case", neutralise(r.case_number, 100)),
      field("Legal basis", neutralise(r.legal_basis, 500)), field("Reason", neutralise(r.reason, 2000)),
      field("Window", `${fmtTime(r.window_start)} .. ${fmtTime(r.window_end)}`),
      field("Answer by", `${fmtTime(r.expires_at)} (no answer = no)`)),
    areaSvg(r),
    h("fieldset", {}, h("legend", { text: `Your matching clips (${clips.length}): choose what to share` }),
      clips.map((c, i) => h("div", { class: "clip" },
        h("input", { type: "checkbox", id: `clip-${i}`, name: "clip", value: c.clip_id }),
        h("label", { for: `clip-${i}` }, c.snapshot_url ? h("img", { src: c.snapshot_url, alt: "", width: 96, height: 54, loading: "lazy", referrerpolicy: "no-referrer" })
          : c.sealed ? thumbImg(clipsCtx(), c, 96, 54) : null, " ", clipLine(c))))),
    h("label", { for: "days" }, "Access for how many days (1-30)"),
    h("input", { id: "days", name: "days", type: "number", min: 1, max: 30, value: days, required: true }),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary", text: "Review approval…" }),
      h("button", { type: "button", class: "danger", onclick: () => showConfirm({ kind: "deny", r }), text: "Review denial…" })));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const chosen = [...form.querySelectorAll("input[name=clip]:checked")].map((x) => x.value).filter((c) => CLIP_RE.test(c)).sort();
    const d = Number(form.days.value);
    if (!chosen.length) return toast("Choose at least one clip to share, or deny the request.", "bad");
    if (!Number.isInteger(d) || d < 1 || d > 30) return toast("Days must be between 1 and 30.", "bad");
    showConfirm({ kind: "approve", r, chosen, days: d });
  });
  return h("section", {}, h("a", { href: "#/requests", text: "← All requests" }), form, confirmPanel());
}

function approvalText({ r, chosen, days }) {
  // The same words as `doorbell owner approve` (describe_approval), plus the key warning.
  const until = Date.now() / 1000 + days * 86400;
  const set = new Set(chosen);
  const offered = requestClips(r);
  const byId = new Map(offered.map((c) => [c.clip_id, c]));
  const rest = offered.filter((c) => !set.has(c.clip_id));
  return [
    `You are about to SHARE footage with ${neutralise(r.agency, 200)}`,
    `  case:        ${neutralise(r.case_number, 100)}`,
    `  legal basis: ${neutralise(r.legal_basis, 500)}`,
    `  reason:      ${neutralise(r.reason, 2000)}`,
    `  window:      ${fmtTime(r.window_start)} .. ${fmtTime(r.window_end)}`,
    `  access:      ${days} day${days !== 1 ? "s" : ""}, until about ${fmtTime(until)} (revocable at any time)`,
    `Clips that WILL be shared (${chosen.length}):`,
    ...chosen.map((c) => "  + " + clipLine(byId.get(c) || { clip_id: c })),
    ...(rest.length ? [`Clips that will NOT be shared (${rest.length}):`, ...rest.map((c) => "  - " + clipLine(c))] : []),
    "The agency gets short-lived download links for these clips only; every link and download is in your audit log.",
    "A copy the agency has downloaded, or a key already delivered to it, cannot be recalled: revoking stops new downloads only.",
    ...(chosen.some((c) => (byId.get(c) || {}).sealed) ? [SEALED_WORDS] : []),
  ].join("\n");
}

function showConfirm(p) {
  if (!state.keys || !state.keys.enrolled) {
    toast("This browser has no linked signing key yet: link it under Linked devices first.", "bad");
    return;
  }
  state.pending = p;
  const panel = $("#confirm");
  if (panel) panel.replaceWith(confirmPanel());
  const q = $("#confirm-title");
  if (q) q.focus();
}

function confirmPanel() {
  const p = state.pending;
  if (!p) return h("div", { id: "confirm", hidden: true });
  let text, question, action;
  if (p.kind === "approve") {
    text = approvalText(p); question = "Sign and send this approval?"; action = "Sign and send approval";
  } else if (p.kind === "deny") {
    text = `You are about to DENY request ${p.r.request_id} from ${neutralise(p.r.agency, 200)} (case ${neutralise(p.r.case_number, 100)}).\n` +
      `None of your ${requestClips(p.r).length} matching clip(s) will be shared; the agency is not told that you were asked or that you said no.`;
    question = "Sign and send this denial?"; action = "Sign and send denial";
  } else if (p.kind === "unlink") {
    const self = state.keys && state.keys.keyId === p.k.key_id;
    text = `You are about to UNLINK ${neutralise(p.k.label, 60)} (key ${fingerprint(p.k.key_id)}): it can no longer approve, deny or revoke for you.` +
      (self ? "\nThis is this browser: it forgets its keys (and its list of your clips), and you need a new pairing code to link it again." : "");
    question = "Sign and send this unlink?"; action = "Sign and send unlink";
  } else if (p.kind === "unshare") {
    text = unshareText(p.s); question = "Sign and send this revocation?"; action = "Sign and revoke the link";
  } else {
    const g = p.g;
    text = `You are about to REVOKE grant ${g.grant_id}: ${neutralise(g.agency, 200)} (case ${neutralise(g.case_number, 100)}) loses access to ` +
      `${(g.clip_ids || []).length} clip(s) at once (it would have lasted until ${fmtTime(g.expires_at)}).\n` +
      "Copies the agency already downloaded, and keys already delivered, are not erased by this.";
    question = "Sign and send this revocation?"; action = "Sign and send revocation";
  }
  return h("section", { id: "confirm", class: "card confirm", "aria-labelledby": "confirm-title" },
    h("h3", { id: "confirm-title", tabindex: "-1", text: question }),
    h("pre", { class: "plain", text }),
    h("div", { class: "row" },
      h("button", { type: "button", class: p.kind === "approve" ? "primary" : "danger", id: "confirm-send", onclick: () => send(p), text: action }),
      h("button", { type: "button", id: "confirm-cancel", onclick: () => { state.pending = null; toast("Nothing was sent."); render(); }, text: "Cancel, send nothing" })));
}

async function send(p) {
  const btn = $("#confirm-send");
  if (btn) btn.disabled = true;
  try {
    const o = state.ownerId;
    let msg, topic, done;
    if (p.kind === "unlink") {
      msg = await signMessage(state.keys, { type: "unlink", owner_id: o, key_id: p.k.key_id });
      topic = `${state.t.owner}/keys/${p.k.key_id}/unlink`;
      done = `Unlinked ${neutralise(p.k.label, 60)}`;
    } else if (p.kind === "unshare") {
      msg = await signMessage(state.keys, { type: "unshare", owner_id: o, share_id: p.s.share_id });
      topic = `${state.t.owner}/shares/${p.s.share_id}/revoke`;
      done = "Revoked: the share link no longer works";
    } else if (p.kind === "revoke") {
      msg = await signMessage(state.keys, { type: "revoke", owner_id: o, grant_id: p.g.grant_id });
      topic = `${state.t.owner}/grants/${p.g.grant_id}/revoke`;
      done = `Revoked: ${neutralise(p.g.agency, 200)} can no longer download these clips`;
    } else {
      const approve = p.kind === "approve";
      const release = approve ? await sealedRelease(p) : null; // sealed clips: their keys re-wrapped for the agency
      msg = await signMessage(state.keys, { type: "decision", owner_id: o, request_id: p.r.request_id,
        decision: approve ? "approve" : "deny", clip_ids: approve ? p.chosen : [], grant_days: approve ? p.days : 0, ...(release || {}) });
      topic = `${state.t.owner}/decisions/${p.r.request_id}`;
      done = approve ? `Approved: ${p.chosen.length} clip(s) shared with ${neutralise(p.r.agency, 200)}` : "Denied: nothing shared";
    }
    const result = await state.t.sendSigned(topic, msg);
    state.pending = null;
    if (result.ok) {
      if (p.kind === "unlink" && state.keys && p.k.key_id === state.keys.keyId) {
        await forgetKeys(state.ownerId); state.keys = null;
        if (state.clipIndex) await state.clipIndex.forget(); // its clip times go with the key that opened them
      }
      // said only once it is all done (keys and clip index forgotten): the toast is what a user, or a test, waits for
      toast(`✓ ${done}${result.expires_at ? `, until ${fmtTime(result.expires_at)}` : ""}`, "ok");
      if (p.kind === "approve" || p.kind === "deny") { state.requests.delete(p.r.request_id); location.hash = "#/grants"; }
      render();
    } else {
      toast(`✗ The sharing service refused: ${neutralise(result.reason, 500)}`, "bad");
      render();
    }
  } catch (err) {
    toast(err.message, "bad");
    if (btn) btn.disabled = false;
  }
}

// ------------------------------------------------------------------ sealed clips (clips.js)
// The words `doorbell owner approve` adds for end-to-end encrypted clips (render.describe_approval).
const SEALED_WORDS = "These clips are end-to-end encrypted: approving hands their decryption keys to the agency. " +
  "A key once delivered cannot be recalled: revoking stops new links, but whatever the agency already downloaded " +
  "stays readable to it. Each clip carries your camera's signature, so the agency can tell that clips you share " +
  "came from the same camera (not which home it is).";

async function startClips(ownerId) {
  state.clipIndex = await new ClipIndex(ownerId).load();
  state.deviceKeys = null;
  state.clipIndex.addEventListener("clip", () => { if (route().name === "clips" && !route().id) render(); });
  const identity = state.keys && state.keys.enrolled ? state.keys.agreement : null;
  if (identity) await state.clipIndex.drain(identity); // kept by an earlier visit that closed before indexing
}

/** Transport's holdAck: a clip announcement is kept in IndexedDB before the broker hears it arrived. */
function keepAnnouncement(topic, payload) {
  const parts = topic.split("/");
  if (parts[2] !== "devices" || parts[4] !== "clips" || !ID_RE.test(parts[3] || "")) return null;
  if (!state.clipIndex || !(state.keys && state.keys.enrolled) || !isSealedAnnouncement(payload)) return null; // nothing to keep
  return state.clipIndex.keep(parts[3], payload);
}

function onClipAnnouncement(deviceId, payload) {
  if (!state.clipIndex || !isSealedAnnouncement(payload)) return; // clips stored in clear: the service's list
  const identity = state.keys && state.keys.enrolled ? state.keys.agreement : null;
  if (!identity) { console.warn(`clip announcement from ${deviceId} not indexed: this browser is not linked`); return; }
  state.clipIndex.ingest(deviceId, payload, identity);
}

function clipsCtx() {
  return { t: state.t, index: state.clipIndex, identity: () => (state.keys && state.keys.enrolled ? state.keys.agreement : null),
    shareCard: (rec) => shareCard(h, { t: state.t, keys: state.keys, identity: state.keys.agreement, ownerId: state.ownerId, config: state.config }, rec),
    deviceKeys: async () => {
      if (!state.deviceKeys) {
        const list = await state.t.rpc("devices", {});
        state.deviceKeys = new Map((list.devices || []).map((d) => [d.device_id, d.public_key || null]));
      }
      return state.deviceKeys;
    } };
}

/** What a request offers: the service's clips (stored in clear) and, for a request that reaches
 * sealed devices, this browser's own clips in its window (the service knows none of them). */
function requestClips(r) {
  const offered = r.clips || [];
  if (!r.agency_recipient || !state.clipIndex) return offered;
  const known = new Set(offered.map((c) => c.clip_id));
  return [...offered, ...state.clipIndex.match(r.window_start, r.window_end).filter((c) => !known.has(c.clip_id))];
}

async function sealedRelease(p) {
  const byId = new Map(requestClips(p.r).map((c) => [c.clip_id, c]));
  const chosen = p.chosen.map((c) => byId.get(c) || { clip_id: c });
  if (!chosen.some((c) => c.sealed)) return null;
  if (!chosen.every((c) => c.sealed)) throw new Error("Choose either end-to-end encrypted clips or clips stored in clear in one approval, not both.");
  if (!p.r.agency_recipient) throw new Error("This request carries no agency key: sealed clips cannot be shared under it.");
  toast("Re-wrapping the chosen clips' keys for the agency…");
  return buildRelease(state.t, state.keys.agreement, p.r.agency_recipient, chosen);
}

// ------------------------------------------------------------------ grants
function grantsView() {
  const now = Date.now() / 1000;
  const grants = [...state.grants.values()].map((g) => ({ ...g, state: g.state === "active" && g.expires_at <= now ? "expired" : g.state }))
    .sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  return h("section", { "aria-labelledby": "gr-title" },
    h("h2", { id: "gr-title", text: "What you have shared" }),
    grants.length ? h("table", { class: "grants" },
      h("caption", { class: "sr-only", text: "Grants: who can download which of your clips, until when" }),
      h("thead", {}, h("tr", {}, ["State", "Agency", "Case", "Clips", "Until", ""].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, grants.map((g) => h("tr", { "data-grant-id": g.grant_id },
        h("td", {}, h("span", { class: `pill ${g.state}`, text: g.state })),
        h("td", { text: neutralise(g.agency, 200) }), h("td", { text: neutralise(g.case_number, 100) }),
        h("td", { text: String((g.clip_ids || []).length) }), h("td", { text: fmtTime(g.expires_at) }),
        h("td", {}, g.state === "active" ? h("button", { type: "button", class: "danger", onclick: () => showConfirm({ kind: "revoke", g }),
          "aria-label": `Revoke grant for ${neutralise(g.agency, 200)} case ${neutralise(g.case_number, 100)}`, text: "Revoke…" }) : null)))))
      : h("p", { class: "muted", text: "Nothing of yours is shared." }),
    sharesSection(h, state.shares, (s) => showConfirm({ kind: "unshare", s })),
    confirmPanel());
}

// ------------------------------------------------------------------ audit
const AUDIT_LABELS = { delivery: "request delivered to you", decision: "your decision", grant: "grant", link_issued: "download link issued",
  download: "download", revocation: "you revoked", refusal: "refused a message of yours", expiry: "request expired",
  grant_expiry: "grant expired", owner_link: "you fetched a clip", owner_key: "key changed", key_enrolled: "device linked", key_unlinked: "device unlinked",
  share: "you shared a clip by link", share_view: "share link opened", share_revocation: "you revoked a share link", share_expiry: "share link expired" };

function auditView() {
  const sec = h("section", { "aria-labelledby": "au-title" }, h("h2", { id: "au-title", text: "Audit log" }),
    h("p", { id: "audit-status", role: "status", text: "Fetching and verifying the hash chain…" }));
  loadAudit(sec).catch((err) => { const s = sec.querySelector("#audit-status"); if (s) { s.textContent = `✗ ${err.message}`; s.className = "bad"; } });
  return sec;
}

async function loadAudit(sec) {
  const rows = [];
  let since = 1, first = null, view;
  for (;;) {
    view = await state.t.rpc("audit", { since, limit: 500 }, 15000);
    first = first || view;
    rows.push(...(view.rows || []));
    if (view.complete || !view.next_since) break;
    since = view.next_since;
  }
  const full = { from_seq: 1, start_prev: first.start_prev, rows, head: view.head, owner_head: view.owner_head,
    complete: !!view.complete };
  const rep = await verifyOwnerView(full, state.ownerId);
  // What this browser verified last must still be there, unchanged (doorbell.core.auditchain.check_pin).
  const pinKey = `doorbell.auditPin.${state.ownerId}`;
  checkPin(full, JSON.parse(localStorage.getItem(pinKey) || "null"), rep);
  if (rep.ok && full.complete) localStorage.setItem(pinKey, JSON.stringify(pinOf(rep, state.ownerId)));
  const own = rows.filter((r) => r.details !== undefined && r.details !== null);
  const status = sec.querySelector("#audit-status");
  if (rep.ok) {
    status.textContent = `✓ Audit chain verified in this browser: ${rep.checked} entries (${own.length} about you, your own chain complete), head #${rep.headSeq} ${rep.headHash.slice(0, 16)}…`;
    status.className = "ok";
  } else {
    const first = rep.bad.entries().next().value;
    const where = first ? `at entry #${first[0]}: ${first[1]}` : `: ${rep.problems[0]}`;
    status.textContent = `✗ Audit chain BROKEN ${where}. Someone changed the log; report it to your sharing service operator.`;
    status.className = "bad";
  }
  const list = h("ol", { class: "audit", reversed: true }, own.slice(-300).reverse().map((r) => {
    const bad = rep.bad.get(r.seq);
    let d = {};
    try { d = JSON.parse(r.details); } catch { /* shown raw below */ }
    return h("li", { class: bad ? "tampered" : "", "data-seq": r.seq },
      h("span", { class: "seq", text: `#${r.seq}` }), " ", h("time", { text: fmtTime(r.ts) }), " ",
      h("strong", { text: AUDIT_LABELS[r.kind] || neutralise(r.kind, 32) }), " ",
      neutralise(auditSummary(r, d), 300),
      bad ? h("span", { class: "tamper-flag", text: ` TAMPERED: ${bad}` }) : null);
  }));
  const otherBad = [...rep.bad.keys()].filter((s) => !own.some((r) => r.seq === s));
  const extra = [...(otherBad.length ? [`Problems outside your own entries at #${otherBad.join(", #")}`] : []),
    ...rep.problems.filter((p) => ![...rep.bad.values()].includes(p))];
  sec.append(list, ...extra.map((t) => h("p", { class: "bad", text: t })));
}

function auditSummary(r, d) {
  switch (r.kind) {
    case "delivery": return `from ${d.agency} (case ${d.case_number}): ${(d.clip_ids || []).length} clip(s) offered`;
    case "decision": return d.decision === "approve" ? `approved ${(d.clip_ids || []).length} clip(s) for ${d.grant_days} day(s)` : "denied";
    case "grant": return `for ${d.agency}: ${(d.clip_ids || []).length} clip(s) until ${fmtTime(d.expires_at)}`;
    case "link_issued": return `${r.actor} got a link for clip ${r.subject}`;
    case "download": return `${r.actor} downloaded clip ${r.subject}`;
    case "revocation": return `grant ${r.subject}`;
    case "refusal": return String(d.reason);
    case "key_enrolled": return `${d.label} (key ${fingerprint(r.subject)})`;
    case "key_unlinked": return `${d.label} (key ${fingerprint(r.subject)})`;
    case "share": return `clip ${d.clip_id} until ${fmtTime(d.expires_at)}${d.sealed ? "" : " (stored unencrypted)"}`;
    case "share_view": case "share_revocation": case "share_expiry": return `clip ${d.clip_id}${d.view ? ` (view ${d.view})` : ""}`;
    default: return `${r.subject}`;
  }
}

// ------------------------------------------------------------------ linked devices
function onKeyState(k) {
  if (state.keys && k.key_id === state.keys.keyId) {
    const enrolled = k.state === "active";
    if (enrolled !== state.keys.enrolled) {
      state.keys.enrolled = enrolled;
      saveKeys(state.ownerId, state.keys);
      if (enrolled && state.pairing) state.pairing.resolve();
    }
  }
}

function devicesView() {
  const mine = state.keys;
  const linked = [...state.linked.values()].sort((a, b) => (a.created_at || 0) - (b.created_at || 0));
  const sec = h("section", { "aria-labelledby": "ld-title" }, h("h2", { id: "ld-title", text: "Linked devices" }),
    h("p", { class: "muted", text: "Each linked phone, laptop or command line holds its own signing key; any of them can approve, deny or revoke, and each can be unlinked." }));
  if (mine && mine.enrolled) {
    sec.append(h("p", { class: "ok", id: "this-key", text: `This browser is linked. Its key: ${fingerprint(mine.keyId)}` }),
      h("p", { id: "this-recipient" }, "Its age recipient, for your cameras to seal clips to this browser too (",
        h("code", { text: "doorbell owner keys recipients --add" }), ", then re-provision the devices): ",
        h("code", { class: "recipient", text: mine.recipient })),
      showCodePanel());
  } else {
    const form = h("form", { class: "card", "aria-labelledby": "link-title" },
      h("h3", { id: "link-title", text: "Link this browser" }),
      h("p", { text: "On a device that is already linked, run `doorbell owner link` and type the code it shows here. This browser then makes its own keys, which never leave it." }),
      h("label", { for: "pair-code" }, "Pairing code"),
      h("input", { id: "pair-code", name: "code", required: true, autocomplete: "off", placeholder: "7K3QD-M9XAB", inputmode: "text" }),
      h("label", { for: "pair-label" }, "Name for this browser"),
      h("input", { id: "pair-label", name: "label", required: true, maxlength: 60, value: defaultLabel() }),
      h("p", { id: "pair-status", role: "status" }),
      h("button", { type: "submit", class: "primary", text: "Link" }));
    const pending = sessionStorage.getItem("doorbell.pairCode"); // from a pairing link; used up by pair()
    if (pending) form.code.value = pending;
    form.addEventListener("submit", (e) => { e.preventDefault(); pair(form).catch((err) => { form.querySelector("#pair-status").textContent = `✗ ${err.message}`; }); });
    sec.append(form);
  }
  sec.append(h("h3", { text: "Keys that can sign for you" }),
    linked.length ? h("ul", { class: "cards" }, linked.map((k) => h("li", { class: `card key ${k.state}`, "data-key-id": k.key_id },
      h("strong", { text: neutralise(k.label, 60) }), " ", h("span", { class: `pill ${k.state}`, text: k.state }),
      h("p", { class: "muted", text: `Key ${fingerprint(k.key_id)} · linked ${fmtTime(k.created_at)}${mine && mine.keyId === k.key_id ? " · this browser" : ""}` }),
      k.state === "active" && mine && mine.enrolled ? h("button", { type: "button", class: "danger", onclick: () => unlink(k), text: "Unlink…" }) : null)))
      : h("p", { class: "muted", text: "No linked browsers yet (your first key, enrolled by the operator, is always valid)." }),
    h("button", { type: "button", onclick: signOut, text: "Sign out of this browser" }),
    confirmPanel());
  return sec;
}

// This linked browser shows a pairing code for another device (src/showcode.js).
function showCodePanel() {
  const stop = () => { if (state.showing) state.showing.stop(); state.showing = null; redrawShowCode(); };
  if (!state.showing || state.showing.state === "done") {
    state.showing = null;
    return h("div", { id: "show-code" }, h("button", { type: "button", id: "show-code-start", text: "Link another device (show a pairing code)",
      onclick: () => {
        state.showing = new CodeShow({ transport: state.t, ownerId: state.ownerId, keys: state.keys, appUrl: location.href,
          render: redrawShowCode, toast: (t, k) => { toast(t, k); if (route().name === "devices") render(); } });
        redrawShowCode();
        state.showing.start().catch((err) => { toast(err.message, "bad"); stop(); });
      } }));
  }
  return state.showing.view(h, stop);
}

function redrawShowCode() {
  const el = $("#show-code");
  if (el) el.replaceWith(showCodePanel());
  const title = $("#offer-title");
  if (title) title.focus();
}

function defaultLabel() {
  const ua = navigator.userAgent;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Mac/.test(ua) ? "Mac" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "device";
  return `Browser on ${os}`;
}

async function pair(form) {
  const status = form.querySelector("#pair-status");
  const code = normaliseCode(form.code.value);
  sessionStorage.removeItem("doorbell.pairCode");
  const label = (neutralise(form.label.value.trim(), 60) || defaultLabel()).slice(0, 60);
  status.textContent = "Making this browser's keys…";
  const keys = await generateKeys(label);
  await saveKeys(state.ownerId, keys);
  state.keys = keys;
  const { pairId, macKey } = await pairSecrets(code, state.ownerId);
  const linked = new Promise((resolve, reject) => {
    state.pairing = { resolve };
    setTimeout(() => reject(new Error("no answer within 3 minutes: is `doorbell owner link` still waiting? Start again with a new code.")), 180000);
  });
  await state.t.publish(`${state.t.owner}/pair/${pairId}`, JSON.stringify(await offerMessage(keys, macKey)));
  status.textContent = `Waiting for your other device to confirm key ${fingerprint(keys.keyId)}…`;
  await linked;
  state.pairing = null;
  toast(`✓ This browser is linked (key ${fingerprint(keys.keyId)})`, "ok");
  render();
}

function unlink(k) {
  showConfirm({ kind: "unlink", k });
}

function signOut() {
  sessionStorage.removeItem("doorbell.session");
  if (state.t) state.t.close();
  location.hash = "";
  location.reload();
}

// ------------------------------------------------------------------ boot
async function boot() {
  takePairingLink();
  if ("serviceWorker" in navigator && location.protocol !== "file:") navigator.serviceWorker.register("sw.js").catch(() => {});
  await loadConfig();
  const saved = JSON.parse(sessionStorage.getItem("doorbell.session") || "null");
  if (saved) {
    try { await start(saved); return; } catch (err) { sessionStorage.removeItem("doorbell.session"); render(loginView(err.message)); return; }
  }
  render();
  window.__doorbell.ready = true;
}
boot();
