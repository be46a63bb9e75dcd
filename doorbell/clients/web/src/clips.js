// The browser's own index of its sealed clips (as the CLI's SealedIndex: the cloud keeps none),
// the clips timeline with decrypted playback and the device's signature, and the re-wrap that
// approving sealed clips for an agency needs (as doorbell/core/release.py build_release).
// The age code sits in a chunk of its own (sealed.js), loaded the first time a clip is opened.
import { hex, sha256 } from "./canonical.js";
import { neutralise, fmtTime, fmtDuration } from "./text.js";
import { h } from "./dom.js";

const CLIP_RE = /^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$/;
const ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const TRIGGERS = new Set(["ring", "motion", "manual"]);
const KINDS = ["video", "snapshot", "metadata", "manifest"];
export const RELEASED_KINDS = ["video", "snapshot", "manifest"];
const MAX_CLIP_LENGTH_S = 600; // clips.max_length_s is at most 600: bounds the window match

/** Whether an announcement on devices/{id}/clips is a sealed one (a clear device announces a ClipMessage there). */
export function isSealedAnnouncement(payload) {
  return payload.length <= 16384 && new TextDecoder().decode(payload).includes('"sealed"');
}

let sealedChunk = null;
/** The age chunk, loaded once. */
export function sealed() {
  sealedChunk = sealedChunk || import("./sealed.js");
  return sealedChunk;
}

// ------------------------------------------------------------------ IndexedDB
function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("doorbell-clips", 1);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("clips", { keyPath: "k" }).createIndex("owner", "owner");
      // announcements received but not yet indexed (as the CLI's owner-{id}-clips.pending)
      req.result.createObjectStore("pending", { keyPath: "k" }).createIndex("owner", "owner");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn, store = "clips") {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(store, mode);
    const r = fn(t.objectStore(store));
    t.oncomplete = () => { d.close(); resolve(r && r.result); };
    t.onerror = () => { d.close(); reject(t.error); };
  });
}

/** One owner's sealed clips in this browser: announcements opened with this browser's X25519 key. */
export class ClipIndex extends EventTarget {
  constructor(ownerId) {
    super();
    this.ownerId = ownerId;
    this.clips = new Map(); // clip_id -> record
    this.thumbs = new Map(); // clip_id -> Promise<object URL | null> (decrypted, in memory only)
  }

  async load() {
    const rows = (await tx("readonly", (s) => s.index("owner").getAll(this.ownerId))) || [];
    for (const r of rows) this.clips.set(r.clip_id, r);
    return this;
  }

  /** Forget this owner's clips in this browser (when this browser is unlinked). */
  async forget() {
    for (const store of ["clips", "pending"]) {
      const keys = (await tx("readonly", (s) => s.index("owner").getAllKeys(this.ownerId), store)) || [];
      await tx("readwrite", (s) => { for (const k of keys) s.delete(k); }, store);
    }
    this.clips.clear();
    for (const p of this.thumbs.values()) p.then((url) => url && URL.revokeObjectURL(url));
    this.thumbs.clear();
  }

  /** Keep a raw announcement before the broker is told it arrived; ingest() removes it once indexed. */
  async keep(topicDevice, payload) {
    const k = `${this.ownerId}|${hex(await sha256(payload))}`;
    await tx("readwrite", (s) => s.put({ k, owner: this.ownerId, device: topicDevice, payload: new Uint8Array(payload) }), "pending");
    return k;
  }

  /** Index what was kept but not indexed (the app was closed in between); how many were new. */
  async drain(identity) {
    const rows = (await tx("readonly", (s) => s.index("owner").getAll(this.ownerId), "pending")) || [];
    let n = 0;
    for (const r of rows) if (await this.ingest(r.device, r.payload, identity)) n++;
    return n;
  }

  /** Index one announcement from devices/{id}/clips; the record, or null (logged) if it is not ours to open. */
  async ingest(topicDevice, payload, identity) {
    let rec = null;
    try {
      rec = await this.open(topicDevice, payload, identity);
      if (this.clips.has(rec.clip_id)) rec = null;
      else {
        await tx("readwrite", (s) => s.put(rec));
        this.clips.set(rec.clip_id, rec);
        this.dispatchEvent(new CustomEvent("clip", { detail: rec }));
      }
    } catch (err) {
      console.warn(`clip announcement from ${topicDevice} not indexed: ${err.message}`);
      rec = null;
    }
    const k = `${this.ownerId}|${hex(await sha256(payload))}`;
    await tx("readwrite", (s) => s.delete(k), "pending"); // indexed, or never ours to open
    return rec;
  }

  async open(topicDevice, payload, identity) {
    if (!identity) throw new Error("this browser is not linked: it has no key to open clips with");
    const msg = JSON.parse(new TextDecoder().decode(payload));
    if (!msg || msg.sealed !== true) throw new Error("not a sealed clip");
    if (msg.device_id !== topicDevice || !ID_RE.test(topicDevice)) throw new Error(`names device ${String(msg.device_id).slice(0, 64)} on ${topicDevice}'s topic`);
    const own = new RegExp(`^(?:.*/)?${topicDevice.replace(/[-]/g, "\\-")}/o/[0-9a-f]{32}/[vsmn]$`);
    const objects = {};
    for (const k of KINDS) {
      const o = msg.objects && msg.objects[k];
      if (!o) continue;
      if (typeof o.key !== "string" || !own.test(o.key) || `/${o.key}/`.includes("/../")) throw new Error("names an object outside the device's sealed objects");
      objects[k] = { key: o.key, sha256: String(o.sha256), size: Number(o.size) };
    }
    if (!objects.video || !objects.manifest || typeof msg.metadata !== "string") throw new Error("incomplete announcement");
    const meta = await (await sealed()).openMetadata(identity, msg.metadata);
    if (meta.device_id !== msg.device_id) throw new Error(`metadata names device ${String(meta.device_id).slice(0, 64)}`);
    if (!CLIP_RE.test(meta.clip_id) || !TRIGGERS.has(meta.trigger) || !Number.isFinite(meta.started_at) || !Number.isFinite(meta.ended_at)) {
      throw new Error("metadata is not a clip's");
    }
    return { k: `${this.ownerId}|${meta.clip_id}`, owner: this.ownerId, clip_id: meta.clip_id, device_id: meta.device_id,
      trigger: meta.trigger, started_at: meta.started_at, ended_at: meta.ended_at, trigger_at: meta.trigger_at,
      size: meta.size, width: meta.width ?? null, height: meta.height ?? null, objects, sealed: true };
  }

  /** Clips overlapping [start, end], oldest first (what a police request's window matches). */
  match(start, end) {
    return [...this.clips.values()]
      .filter((c) => c.started_at >= start - MAX_CLIP_LENGTH_S && c.started_at <= end && c.ended_at >= start)
      .sort((a, b) => a.started_at - b.started_at);
  }

  byDevice() {
    const out = new Map();
    for (const c of [...this.clips.values()].sort((a, b) => b.started_at - a.started_at)) {
      if (!out.has(c.device_id)) out.set(c.device_id, []);
      out.get(c.device_id).push(c);
    }
    return new Map([...out.entries()].sort((a, b) => a[0].localeCompare(b[0])));
  }
}

// ------------------------------------------------------------------ objects
/** One of the owner's sealed objects (ciphertext): a short-lived link from the service, then the storage. */
export async function fetchObject(t, key, range) {
  const link = await t.rpc("object_link", { key });
  let r;
  try {
    r = await fetch(link.url, { headers: range ? { Range: range } : {}, cache: "no-store", referrerPolicy: "no-referrer" });
  } catch (err) {
    throw new Error(`the storage server did not answer (${err.message}); it must allow this app's origin (CORS)`);
  }
  if (r.status !== 200 && r.status !== 206) throw new Error(`the storage server refused the link: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The snapshot, decrypted, as an object URL (memory only), or null. */
export function thumbnail(index, t, identity, rec) {
  if (!rec.objects.snapshot || !identity) return Promise.resolve(null);
  let p = index.thumbs.get(rec.clip_id);
  if (!p) {
    p = (async () => {
      const s = await sealed();
      const jpeg = await s.decrypt(identity, await fetchObject(t, rec.objects.snapshot.key));
      return URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
    })().catch((err) => { console.warn("snapshot", rec.clip_id, err.message); index.thumbs.delete(rec.clip_id); return null; });
    index.thumbs.set(rec.clip_id, p);
  }
  return p;
}

/** Open a clip: the device-signed manifest checked against the device's registered key, then the
 * video (and snapshot) decrypted and checked against it. {manifest, video, snapshot} or an Error. */
export async function openClip(t, identity, rec, deviceKey) {
  const s = await sealed();
  const manifest = await s.verifyManifest(await s.decrypt(identity, await fetchObject(t, rec.objects.manifest.key)), deviceKey);
  if (manifest.clip_id !== rec.clip_id || manifest.device_id !== rec.device_id) {
    throw new s.SealedError("the signed manifest is another clip's");
  }
  const video = await s.decrypt(identity, await fetchObject(t, rec.objects.video.key));
  if (!await s.matchesManifest(manifest, "video", video)) {
    throw new s.SealedError("the video does not match the device-signed manifest (altered, or another clip's)");
  }
  return { manifest, video };
}

// ------------------------------------------------------------------ release (doorbell.core.release.build_release)
/** Re-wrap every chosen clip's objects (video, snapshot, manifest) for the agency's recipient:
 * {agency_recipient, released, headers}, the fields a sealed approval adds to the signed decision. */
export async function buildRelease(t, identity, recipient, recs) {
  const s = await sealed();
  const released = {}, headers = {};
  for (const rec of recs) {
    released[rec.clip_id] = {};
    headers[rec.clip_id] = {};
    for (const kind of RELEASED_KINDS) {
      const obj = rec.objects[kind];
      if (!obj) continue;
      const { header, offset } = s.splitHeader(await fetchObject(t, obj.key, "bytes=0-65535"));
      const fresh = await s.rewrapHeader(identity, header, recipient);
      released[rec.clip_id][kind] = { key: obj.key, payload_offset: offset, header_sha256: hex(await sha256(fresh)) };
      headers[rec.clip_id][kind] = btoa(String.fromCharCode(...fresh));
    }
  }
  return { agency_recipient: recipient, released, headers };
}

// ------------------------------------------------------------------ views

/** An <img> that shows the decrypted snapshot once it is there. */
export function thumbImg(ctx, rec, width = 160, height = 90) {
  const img = h("img", { class: "thumb", alt: `Snapshot of clip ${rec.clip_id}`, width, height, "data-clip-id": rec.clip_id });
  thumbnail(ctx.index, ctx.t, ctx.identity(), rec).then((url) => { if (url) img.src = url; else img.alt = "No snapshot"; });
  return img;
}

const TRIGGER_LABEL = { ring: "Ring", motion: "Motion", manual: "Manual" };

/** The clips timeline: one column per device, newest first, with snapshots; a clip opens in the player. */
export function clipsView(ctx, clipId) {
  const sec = h("section", { "aria-labelledby": "clips-title", id: "clips" }, h("h2", { id: "clips-title", text: "Clips" }));
  if (!ctx.identity()) {
    sec.append(h("p", { class: "muted", text: "Link this browser first (Linked devices): your cameras seal their clips to your linked keys, and this browser's key opens them." }));
    return sec;
  }
  if (clipId) {
    const rec = ctx.index.clips.get(clipId);
    sec.append(h("a", { href: "#/clips", text: "← All clips" }));
    sec.append(rec ? player(ctx, rec) : h("p", { text: "No such clip in this browser's index." }));
    return sec;
  }
  const groups = ctx.index.byDevice();
  sec.append(h("p", { class: "muted", text: "End-to-end encrypted: the service cannot open these clips; this browser opens them with its own key, and keeps its own list of them." }));
  if (!groups.size) {
    sec.append(h("p", { class: "muted", id: "clips-empty", text: "No clips since this browser was linked. New clips appear as your cameras announce them." }));
    return sec;
  }
  for (const [dev, recs] of groups) {
    const name = neutralise(dev, 64);
    sec.append(h("h3", { text: `${name} (${recs.length})` }),
      h("ol", { class: "timeline", "aria-label": `Clips from ${name}, newest first` }, recs.slice(0, 200).map((c) =>
        h("li", { class: "clip-row", "data-clip-id": c.clip_id },
          h("a", { href: `#/clips/${encodeURIComponent(c.clip_id)}` }, // its name: the snapshot's alt text and the visible time
            thumbImg(ctx, c),
            h("span", { class: "when" }, h("strong", { text: TRIGGER_LABEL[c.trigger] || c.trigger }), " ",
              h("time", { text: fmtTime(c.started_at) }), " ", h("span", { class: "muted", text: fmtDuration(c.ended_at - c.started_at) })))))));
  }
  return sec;
}

function player(ctx, rec) {
  const name = neutralise(rec.device_id, 64);
  const status = h("p", { id: "clip-signature", role: "status", text: "Decrypting and checking the device's signature…" });
  const video = h("video", { id: "clip-video", controls: true, playsinline: true, muted: true, preload: "auto", width: 640, height: 360, "aria-label": `Clip from ${name} at ${fmtTime(rec.started_at)}` });
  const box = h("div", { class: "card player" },
    h("h3", { text: `${TRIGGER_LABEL[rec.trigger] || rec.trigger} at ${name}, ${fmtTime(rec.started_at)}` }),
    h("p", { class: "muted", text: `${fmtDuration(rec.ended_at - rec.started_at)} · clip ${rec.clip_id}` }),
    video, status, ctx.shareCard ? ctx.shareCard(rec) : null);
  (async () => {
    const devices = await ctx.deviceKeys();
    const { manifest, video: bytes } = await openClip(ctx.t, ctx.identity(), rec, devices.get(rec.device_id));
    video.src = URL.createObjectURL(new Blob([bytes], { type: "video/mp4" }));
    status.textContent = `✓ Signed by ${neutralise(manifest.device_id, 64)}: the device's registered key ${manifest.device_key.slice(0, 20)}… signed this clip, and the video is byte for byte what it recorded.`;
    status.className = "ok";
    status.dataset.verdict = "ok";
  })().catch((err) => {
    video.removeAttribute("src");
    video.hidden = true;
    status.textContent = `✗ Not shown: ${err.message}`;
    status.className = "bad";
    status.dataset.verdict = "bad";
  });
  return box;
}

