// A linked browser shows a pairing code (and its QR code) for a new browser or phone: the same
// protocol as `doorbell owner link` (doorbell/core/linking.py). Both sides derive the pairing topic
// and an HMAC key from the code (pairing.js); the new device's offer must carry the right MAC; the
// owner compares fingerprints; this browser then signs the Enrol with its own non-extractable key.
import { encode } from "uqr";
import { b64u, canonical, utf8 } from "./canonical.js";
import { CODE_ALPHABET, pairSecrets } from "./pairing.js";
import { fingerprint, keyIdOf, signMessage } from "./keys.js";
import { neutralise } from "./text.js";

export const PAIR_WINDOW_MS = 180000;
const KEY_RE = /^ed25519:[A-Za-z0-9_-]{43}$/;
const RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;

export function newCode() {
  // 32 letters divide 256: a byte modulo 32 is uniform
  return Array.from(crypto.getRandomValues(new Uint8Array(10)), (b) => CODE_ALPHABET[b % 32]).join("");
}

export const formatCode = (code) => `${code.slice(0, 5)}-${code.slice(5)}`;

/** The QR code of `text` drawn on a canvas (uqr encodes; no network, no HTML strings). */
export function qrCanvas(text, scale = 4) {
  const { data, size } = encode(text, { ecc: "M", border: 2 });
  const c = document.createElement("canvas");
  c.width = c.height = size * scale;
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, c.width, c.height);
  g.fillStyle = "#000";
  data.forEach((row, y) => row.forEach((on, x) => { if (on) g.fillRect(x * scale, y * scale, scale, scale); }));
  return c;
}

async function macOk(macKey, offer) {
  const body = { v: 1, kind: "offer", public_key: offer.public_key, x25519: offer.x25519, label: offer.label };
  const want = b64u(new Uint8Array(await crypto.subtle.sign("HMAC", macKey, utf8("doorbell/v1/pair-offer\n" + canonical(body)))));
  // constant-time enough for a one-shot comparison of two 43-character strings
  let diff = want.length ^ String(offer.mac || "").length;
  for (let i = 0; i < want.length; i++) diff |= want.charCodeAt(i) ^ String(offer.mac || "").charCodeAt(i);
  return diff === 0;
}

/**
 * One pairing session shown by this (linked) browser. `render()` is called whenever its panel
 * changes; `offer()` receives every message on owners/{o}/pair/{id} (the app is subscribed to
 * the owner's tree already).
 */
export class CodeShow {
  constructor({ transport, ownerId, keys, appUrl, render, toast }) {
    Object.assign(this, { transport, ownerId, keys, appUrl, render, toast });
    this.code = newCode();
    this.state = "deriving"; // deriving, waiting, offered, sending, done, expired
    this.candidate = null;
    this.timer = null;
  }

  async start() {
    const { pairId, macKey } = await pairSecrets(this.code, this.ownerId);
    Object.assign(this, { pairId, macKey, state: "waiting" });
    this.timer = setTimeout(() => { if (this.state === "waiting" || this.state === "offered") { this.state = "expired"; this.render(); } }, PAIR_WINDOW_MS);
    this.render();
  }

  stop() { clearTimeout(this.timer); this.state = "done"; }

  get link() { return `${this.appUrl.split("#")[0]}#/link/${formatCode(this.code)}`; }

  async offer(pairId, payload) {
    if (pairId !== this.pairId || this.state !== "waiting") return;
    let offer;
    try { offer = JSON.parse(new TextDecoder().decode(payload)); } catch { return; }
    if (offer.kind !== "offer" || !KEY_RE.test(offer.public_key || "") || !RECIPIENT_RE.test(offer.x25519 || "") ||
        typeof offer.label !== "string" || !offer.label || offer.label.length > 60) return;
    if (!(await macOk(this.macKey, offer))) { console.warn("ignored a pairing offer: not made with this code"); return; }
    this.candidate = { ...offer, keyId: await keyIdOf(offer.public_key) };
    this.state = "offered";
    this.render();
  }

  async confirm() {
    const c = this.candidate;
    this.state = "sending";
    this.render();
    const msg = await signMessage(this.keys, { type: "enrol", owner_id: this.ownerId, key_id: c.keyId,
      public_key: c.public_key, x25519: c.x25519, label: c.label });
    const result = await this.transport.sendSigned(`${this.transport.owner}/keys/${c.keyId}/enrol`, msg);
    this.stop();
    if (result.ok) this.toast(`✓ Linked ${neutralise(c.label, 60)} (key ${fingerprint(c.keyId)})`, "ok");
    else this.toast(`✗ The sharing service refused: ${neutralise(result.reason, 500)}`, "bad");
    this.render();
  }

  /** The panel; `h` is the app's DOM helper. */
  view(h, cancel) {
    if (this.state === "deriving") return h("p", { id: "show-code", role: "status", text: "Making a pairing code…" });
    if (this.state === "expired") return h("p", { id: "show-code", class: "bad", role: "status", text: "The pairing code expired; nothing was linked." });
    if (this.state === "offered" || this.state === "sending") {
      const c = this.candidate;
      return h("section", { id: "show-code", class: "card confirm", "aria-labelledby": "offer-title" },
        h("h3", { id: "offer-title", tabindex: "-1", text: "Link this device?" }),
        h("pre", { class: "plain", text: `A device asks to sign for you:\n  name:        ${neutralise(c.label, 60)}\n  fingerprint: ${fingerprint(c.keyId)}\n` +
          "Check that the other screen shows the same fingerprint. Once linked, it can approve, deny and revoke for you until you unlink it." }),
        h("div", { class: "row" },
          h("button", { type: "button", class: "primary", id: "offer-confirm", disabled: this.state === "sending",
            onclick: () => this.confirm().catch((err) => { this.toast(err.message, "bad"); this.stop(); this.render(); }),
            text: "Sign and link this device" }),
          h("button", { type: "button", onclick: cancel, text: "Cancel, link nothing" })));
    }
    return h("section", { id: "show-code", class: "card", "aria-labelledby": "code-title" },
      h("h3", { id: "code-title", text: "Pairing code for your other device" }),
      h("p", { class: "pair-code", "data-code": this.code, text: formatCode(this.code) }),
      h("p", { class: "muted", text: "On the new browser or phone: Linked devices > Link this browser, and type this code; or scan the QR code, which opens the app with the code filled in. Valid for 3 minutes." }),
      Object.assign(qrCanvas(this.link), { role: "img", ariaLabel: `QR code of the pairing link ${this.link}`, className: "qr" }),
      h("button", { type: "button", onclick: cancel, text: "Stop showing the code" }));
  }
}
