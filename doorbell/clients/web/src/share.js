// The share-link viewer (no login): /app/share.html#t=TOKEN&k=AGE-SECRET-KEY-1…
// Asks the sharing service for short-lived links by token (GET /v1/shares/{token}), fetches the
// opaque copies, decrypts them here with the identity from the URL fragment (never sent to any
// server), checks the device-signed manifest, and plays the clip. See docs/sharing.md.
import { decrypt, matchesManifest, verifyManifest } from "./sealed.js";
import { hex, sha256 } from "./canonical.js";
import { fmtTime, neutralise } from "./text.js";

const $ = (sel) => document.querySelector(sel);
const state = { done: false, error: null, frames: 0 };
window.__share = state; // read by the end-to-end tests

function status(text, cls = "") {
  const s = $("#share-status");
  s.textContent = text;
  s.className = cls;
}

function params() {
  const out = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { token: out.get("t") || "", key: out.get("k") || "" };
}

async function getBytes(url) {
  const r = await fetch(url, { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" });
  if (!r.ok) throw new Error(`the storage server refused the clip (HTTP ${r.status}); the link may just have been revoked`);
  return new Uint8Array(await r.arrayBuffer());
}

function b64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Header re-wrapped for this share + the stored object's payload -> plaintext (sealed.js: age-encryption). */
async function openSealed(obj, identity) {
  const stored = await getBytes(obj.url);
  const header = b64(obj.header);
  if (hex(await sha256(header)) !== obj.header_sha256) throw new Error("a header does not match what the owner signed");
  const file = new Uint8Array(header.length + stored.length - obj.payload_offset);
  file.set(header, 0);
  file.set(stored.subarray(obj.payload_offset), header.length);
  return decrypt(identity, file);
}

async function checkFile(manifest, kind, data) {
  if (!(await matchesManifest(manifest, kind, data))) throw new Error(`the ${kind} is not the one the device signed`);
}

function fact(dl, name, value) {
  dl.append(Object.assign(document.createElement("dt"), { textContent: name }),
    Object.assign(document.createElement("dd"), { textContent: value }));
}

function play(video, snapshot) {
  const v = $("#share-video");
  v.src = URL.createObjectURL(new Blob([video], { type: "video/mp4" }));
  const count = () => v.requestVideoFrameCallback(() => { state.frames += 1; count(); });
  if (v.requestVideoFrameCallback) count();
  v.play().catch(() => { /* autoplay may be refused; the controls are there */ });
  if (snapshot) {
    const img = $("#share-snapshot");
    img.src = URL.createObjectURL(new Blob([snapshot], { type: "image/jpeg" }));
    img.hidden = false;
  }
  $("#share-clip").hidden = false;
}

async function main() {
  const { token, key } = params();
  if (!token) throw new Error("this link is incomplete: it has no token (copy the whole link, including the part after #)");
  const r = await fetch(`/v1/shares/${encodeURIComponent(token)}`, { credentials: "omit", cache: "no-store" });
  if (r.status === 404) {
    throw new Error("This link no longer works: its owner revoked it, or it expired. Ask them for a new one.");
  }
  if (r.status === 429) throw new Error("This link was opened too often just now; try again in a minute.");
  if (!r.ok) throw new Error(`the sharing service could not open this link (HTTP ${r.status})`);
  const share = await r.json();
  const dl = $("#share-facts");
  fact(dl, "Clip", neutralise(share.clip_id, 40));
  fact(dl, "Link works until", fmtTime(share.expires_at));
  if (share.sealed) {
    if (!key) throw new Error("this link is incomplete: the clip's key (the part after &k=) is missing");
    status("Decrypting in your browser…");
    if (!/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/.test(key)) throw new Error("the key in this link is damaged (copy the whole link)");
    const manifest = await verifyManifest(await openSealed(share.objects.manifest, key), share.device_key);
    const video = await openSealed(share.objects.video, key);
    await checkFile(manifest, "video", video);
    let snapshot = null;
    if (share.objects.snapshot) {
      snapshot = await openSealed(share.objects.snapshot, key);
      await checkFile(manifest, "snapshot", snapshot);
    }
    fact(dl, "Recorded", fmtTime(manifest.started_at_ms / 1000));
    fact(dl, "Device signature", `✓ verified (device key ${share.device_key.slice(8, 24)}…)`);
    play(video, snapshot);
    $("#share-note").textContent = "This clip was decrypted in your browser with the key in the link. The key after the # " +
      "in the address is never sent to any server; the sharing service only knows that someone opened the link.";
    status("✓ Decrypted in this browser; the device's signature verifies.", "ok");
  } else {
    status("Downloading…");
    const video = await getBytes(share.objects.video.url);
    if (hex(await sha256(video)) !== share.sha256) throw new Error("the clip does not match its recorded SHA-256");
    const snapshot = share.objects.snapshot ? await getBytes(share.objects.snapshot.url) : null;
    fact(dl, "Encryption", "none: this camera stores its clips unencrypted");
    play(video, snapshot);
    $("#share-note").textContent = "This camera stores its clips unencrypted: the link's token is its only protection, " +
      "and the sharing service could see the clip. Every opening of the link is in its owner's audit log.";
    status("✓ Clip checked against the SHA-256 its camera announced (stored unencrypted).", "ok");
  }
  state.done = true;
}

main().catch((err) => {
  state.error = err.message;
  status(`✗ ${err.message}`, "bad");
});
