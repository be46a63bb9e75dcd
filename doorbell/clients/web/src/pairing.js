// Pairing a browser to an owner that already has a linked key (`doorbell owner link` shows a
// one-time code). Both sides derive, from the code, a topic name and a MAC key with PBKDF2;
// the browser's offer (its public keys) is MACed so the broker or anyone else on it cannot
// swap in their own key without knowing the code, which never crosses the network.
import { b64u, canonical, hex, utf8 } from "./canonical.js";

export const CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32
export const PBKDF2_ITERATIONS = 200000;

export function normaliseCode(text) {
  const s = String(text || "").toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  if (!/^[0-9A-HJKMNP-TV-Z]{10}$/.test(s)) throw new Error("a pairing code is 10 letters and digits, like 7K3QD-M9XAB");
  return s;
}

export async function pairSecrets(code, ownerId) {
  const base = await crypto.subtle.importKey("raw", utf8(code), "PBKDF2", false, ["deriveBits"]);
  const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256",
    salt: utf8(`doorbell/v1/pair\n${ownerId}`), iterations: PBKDF2_ITERATIONS }, base, 384));
  const macKey = await crypto.subtle.importKey("raw", bits.slice(16, 48), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return { pairId: hex(bits.slice(0, 16)), macKey };
}

export async function offerMessage(keys, macKey) {
  const offer = { v: 1, kind: "offer", public_key: keys.publicKey, x25519: keys.recipient, label: keys.label };
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", macKey, utf8("doorbell/v1/pair-offer\n" + canonical(offer))));
  return { ...offer, mac: b64u(mac) };
}
