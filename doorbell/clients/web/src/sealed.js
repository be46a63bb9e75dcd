// Sealed clips in the browser (issue 12/13): open what the devices sealed to this browser's X25519
// key, check the device's signature, and re-wrap a clip's file key for an agency on approval.
// Loaded on demand (a separate chunk): the age library is most of its size.
//
// Decryption is the `age-encryption` package (typage, by the age authors), which takes this
// browser's NON-EXTRACTABLE WebCrypto X25519 key as an identity. The one thing it has no API for
// is writing a header for an existing file key (the re-wrap), so that part is here: the X25519
// stanza (C2SP age spec: ephemeral share, HKDF-SHA-256, ChaCha20-Poly1305 from @noble/ciphers) and
// the header MAC, checked by tests against doorbell/core/age.py and the `age` CLI.
import { Decrypter } from "age-encryption";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { canonical, hex, sha256, unb64u, utf8 } from "./canonical.js";

export class SealedError extends Error {}

const MAX_HEADER = 65536;

/** The age header of an age file (or of its first bytes): {header, offset}. */
export function splitHeader(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const intro = utf8("age-encryption.org/v1\n");
  if (b.length < intro.length || intro.some((c, i) => b[i] !== c)) throw new SealedError("not an age file");
  // the MAC line is the first line starting with "---" (stanza bodies are base64, never "-")
  let start = 0;
  for (;;) {
    const nl = b.indexOf(0x0a, start);
    if (nl < 0 || nl > MAX_HEADER) throw new SealedError("age header incomplete or longer than 64 KiB");
    if (b[start] === 0x2d && b[start + 1] === 0x2d && b[start + 2] === 0x2d) {
      return { header: b.slice(0, nl + 1), offset: nl + 1 };
    }
    start = nl + 1;
  }
}

function decrypter(identity) {
  const d = new Decrypter();
  d.addIdentity(identity);
  return d;
}

/** Decrypt a whole age file with this browser's CryptoKey identity (the library checks the MAC and every chunk). */
export async function decrypt(identity, bytes) {
  try {
    return await decrypter(identity).decrypt(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  } catch (err) {
    throw new SealedError(`does not open with this browser's key: ${err.message}`);
  }
}

/** A SealedClipMessage's metadata (base64 of an age file): the ClipMeta object, or SealedError. */
export async function openMetadata(identity, b64) {
  const bin = atob(b64);
  const data = await decrypt(identity, Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new SealedError("the metadata is not JSON");
  }
}

// ------------------------------------------------------------------ re-wrap (doorbell.core.age.rewrap_header)
const b64nopad = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");

async function hkdf(ikm, salt, info, bytes = 32) {
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: utf8(info) }, key, bytes * 8));
}

function bech32Decode(text) {
  const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
  const s = text.toLowerCase();
  const pos = s.lastIndexOf("1");
  if (!s.startsWith("age1") || pos !== 3 || s.length !== 62) throw new SealedError("not an age X25519 recipient");
  const data = [...s.slice(pos + 1, -6)].map((c) => { const v = CHARSET.indexOf(c); if (v < 0) throw new SealedError("bad recipient character"); return v; });
  const out = [];
  let acc = 0, bits = 0;
  for (const v of data) { acc = (acc << 5) | v; bits += 5; if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); } }
  return new Uint8Array(out);
}

/** One X25519 stanza wrapping ``fileKey`` for ``recipient`` (age1...), with a fresh ephemeral WebCrypto key. */
async function x25519Stanza(fileKey, recipient) {
  const pub = bech32Decode(recipient);
  if (pub.length !== 32) throw new SealedError("an X25519 recipient is 32 bytes");
  const eph = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const share = new Uint8Array(await crypto.subtle.exportKey("raw", eph.publicKey));
  const theirs = await crypto.subtle.importKey("raw", pub, { name: "X25519" }, false, []);
  const secret = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: theirs }, eph.privateKey, 256));
  if (secret.every((x) => x === 0)) throw new SealedError("the agency's recipient is a low-order point");
  const salt = new Uint8Array(64);
  salt.set(share); salt.set(pub, 32);
  const wrapKey = await hkdf(secret, salt, "age-encryption.org/v1/X25519");
  const body = chacha20poly1305(wrapKey, new Uint8Array(12)).encrypt(fileKey);
  return `-> X25519 ${b64nopad(share)}\n${b64nopad(body)}\n`;
}

/** A fresh header for the same payload, addressed to ``recipient`` only: the file key unwrapped with
 * this browser's key (the library verifies the household header's MAC), wrapped again, new MAC. */
export async function rewrapHeader(identity, header, recipient) {
  let fileKey;
  try {
    fileKey = await decrypter(identity).decryptHeader(header);
  } catch (err) {
    throw new SealedError(`this browser's key does not open the clip's header: ${err.message}`);
  }
  const noMac = utf8("age-encryption.org/v1\n" + await x25519Stanza(fileKey, recipient) + "---");
  const macKey = await crypto.subtle.importKey("raw", await hkdf(fileKey, new Uint8Array(0), "header"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", macKey, noMac));
  fileKey.fill(0);
  const tail = utf8(` ${b64nopad(mac)}\n`);
  const out = new Uint8Array(noMac.length + tail.length);
  out.set(noMac); out.set(tail, noMac.length);
  return out;
}

// ------------------------------------------------------------------ device signature (doorbell.core.manifest)
const MANIFEST_DOMAIN = "doorbell/v1/device/clip-manifest";

/** The fields a device signs, as ClipManifest.model_dump() gives them (absent optionals are null). */
function manifestFields(m) {
  const files = {};
  for (const [k, f] of Object.entries(m.files || {})) {
    files[k] = { plaintext_sha256: f.plaintext_sha256, plaintext_size: f.plaintext_size,
      ciphertext_sha256: f.ciphertext_sha256 ?? null, ciphertext_size: f.ciphertext_size ?? null };
  }
  return { type: m.type, v: m.v, clip_id: m.clip_id, device_id: m.device_id, trigger: m.trigger,
    started_at_ms: m.started_at_ms, ended_at_ms: m.ended_at_ms, trigger_at_ms: m.trigger_at_ms,
    pre_roll_ms: m.pre_roll_ms, files, device_key: m.device_key ?? "" };
}

/** Check a decrypted manifest against the device's REGISTERED key (never the one it names); the manifest, or SealedError. */
export async function verifyManifest(bytes, deviceKey) {
  let m;
  try { m = JSON.parse(new TextDecoder().decode(bytes)); } catch { throw new SealedError("the manifest is not JSON"); }
  if (!m || m.type !== "clip_manifest" || m.v !== 1 || !m.files || !m.files.video) throw new SealedError("not a clip manifest");
  if (!deviceKey || !deviceKey.startsWith("ed25519:")) throw new SealedError("the service has no registered key for this device");
  if (!m.signature) throw new SealedError("the manifest is not signed");
  const key = await crypto.subtle.importKey("raw", unb64u(deviceKey.slice(8)), { name: "Ed25519" }, false, ["verify"]);
  const signed = utf8(MANIFEST_DOMAIN + "\n" + canonical(manifestFields(m), { integersOnly: true }));
  let ok = false;
  try { ok = await crypto.subtle.verify({ name: "Ed25519" }, key, unb64u(m.signature), signed); } catch { ok = false; }
  if (!ok) {
    if (m.device_key && m.device_key !== deviceKey) throw new SealedError(`signed by another key (${m.device_key.slice(0, 20)}…), not this device's registered key`);
    throw new SealedError("the signature does not verify: the manifest was altered after signing, or is not this device's");
  }
  if (m.device_key !== deviceKey) throw new SealedError("the manifest names another signing key");
  return m;
}

/** Whether ``data`` is the manifest's ``kind`` file, byte for byte (SHA-256 and size). */
export async function matchesManifest(m, kind, data) {
  const want = m.files[kind];
  if (!want) return false;
  return data.length === want.plaintext_size && hex(await sha256(data)) === want.plaintext_sha256;
}
