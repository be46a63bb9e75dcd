// Share links in the owner's app: the list (retained ShareState on owners/{o}/shares/{id}, completed
// by the service's `shares` RPC) with a browser-signed revoke. Links are made by
// `doorbell owner share CLIP` (docs/sharing.md); the link's key was shown once and is kept nowhere.
import { neutralise, fmtTime } from "./text.js";
import { randomHex, unb64u } from "./canonical.js";
import { bech32, signMessage } from "./keys.js";
import { buildRelease } from "./clips.js";

export function shareState(s, now = Date.now() / 1000) {
  return s.state === "active" && s.expires_at <= now ? "expired" : s.state;
}

/** The "Share links" part of the Shared screen; `h` is the app's DOM helper, `onRevoke(share)` asks to confirm. */
export function sharesSection(h, shares, onRevoke) {
  const rows = [...shares.values()].map((s) => ({ ...s, state: shareState(s) }))
    .sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  return h("section", { "aria-labelledby": "sh-title", id: "shares" },
    h("h3", { id: "sh-title", text: "Share links" }),
    h("p", { class: "muted", text: "Links anyone can open, made under a playing clip (Clips) or with `doorbell owner share CLIP`. Every view is in your audit log; revoking a link stops it at once." }),
    rows.length ? h("table", { class: "grants" },
      h("caption", { class: "sr-only", text: "Share links: which clip, until when, how often viewed" }),
      h("thead", {}, h("tr", {}, ["State", "Clip", "Views", "Until", ""].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, rows.map((s) => h("tr", { "data-share-id": s.share_id },
        h("td", {}, h("span", { class: `pill ${s.state}`, text: s.state })),
        h("td", { text: `${neutralise(s.clip_id, 40)}${s.sealed ? "" : " (unencrypted)"}` }),
        h("td", { text: s.views === undefined ? "-" : String(s.views) }),
        h("td", { text: fmtTime(s.expires_at) }),
        h("td", {}, s.state === "active" ? h("button", { type: "button", class: "danger", onclick: () => onRevoke(s),
          "aria-label": `Revoke share link for clip ${neutralise(s.clip_id, 40)}`, text: "Revoke…" }) : null)))))
      : h("p", { class: "muted", text: "No share links." }));
}

export function unshareText(s) {
  return `You are about to REVOKE the share link for clip ${neutralise(s.clip_id, 40)} (viewed ${s.views ?? 0} time(s)): ` +
    "it stops working at once.\nCopies someone already saved are not erased by this.";
}

// ------------------------------------------------------------------ making a link in the browser

/** A fresh X25519 age identity for one share: [secret "AGE-SECRET-KEY-1…", recipient "age1…"]. The key
 * is made extractable on purpose: it goes into the link, nowhere else (this browser keeps no copy). */
export async function shareIdentity() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return [bech32("age-secret-key-", unb64u(jwk.d)).toUpperCase(), bech32("age", pub)];
}

/** Where share links point: the sharing service's /app/share.html (config.json's sharing_url, or this
 * page's own origin when the service serves the app at /app/). */
export function shareBase(config) {
  if (config && config.sharing_url) return String(config.sharing_url).replace(/\/+$/, "");
  return location.pathname.startsWith("/app/") ? location.origin : null;
}

/**
 * Share one sealed clip of this browser's index: re-wrap its video, snapshot and manifest headers to a
 * fresh identity (clips.js buildRelease, as for an agency), sign a ShareCreate with this browser's key,
 * and return {ok, reason, link, share_id, expires_at}.
 */
export async function createShareLink({ t, keys, identity, ownerId, rec, days, base }) {
  const [secret, recipient] = await shareIdentity();
  const rel = await buildRelease(t, identity, recipient, [rec]);
  const shareId = randomHex(16);
  const msg = await signMessage(keys, { type: "share", owner_id: ownerId, share_id: shareId, clip_id: rec.clip_id,
    days, share_recipient: recipient, released: rel.released[rec.clip_id], headers: rel.headers[rec.clip_id] });
  const result = await t.sendSigned(`${t.owner}/shares/${shareId}/create`, msg);
  if (!result.ok) return { ok: false, reason: result.reason };
  return { ok: true, share_id: shareId, expires_at: result.expires_at,
    link: `${base}/app/share.html#t=${result.token}&k=${secret}` };
}

/** The "Share by link" card under a playing clip; `h` is the DOM helper. */
export function shareCard(h, ctx, rec) {
  const base = shareBase(ctx.config);
  const out = h("div", { id: "share-result", role: "status" });
  const days = h("input", { id: "share-days", type: "number", min: 1, max: 30, value: 7, inputmode: "numeric" });
  const go = h("button", { type: "button", id: "share-make", text: "Sign and make the link" });
  go.addEventListener("click", async () => {
    go.disabled = true;
    out.textContent = "Re-wrapping this clip's keys for the link and signing…";
    try {
      const res = await createShareLink({ ...ctx, rec, days: Math.max(1, Math.min(30, parseInt(days.value, 10) || 7)), base });
      if (!res.ok) { out.textContent = `✗ The sharing service refused: ${neutralise(res.reason, 500)}`; out.className = "bad"; go.disabled = false; return; }
      out.replaceChildren(
        h("p", { class: "ok", text: `✓ Link made, until ${fmtTime(res.expires_at)}. It is shown only now: copy it (the key after # is kept nowhere else).` }),
        h("input", { id: "share-link", readonly: true, value: res.link, "aria-label": "The share link", onfocus: (e) => e.target.select() }));
      out.className = "";
    } catch (err) {
      out.textContent = `✗ ${err.message}`; out.className = "bad"; go.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-labelledby": "share-title" },
    h("h3", { id: "share-title", text: "Share this clip by link" }),
    base ? null : h("p", { class: "bad", text: "This app does not know the sharing service's address (config.json sharing_url)." }),
    h("p", { class: "muted", text: "Anyone with the link can watch and save this clip until it expires or you revoke it (Shared); a saved copy cannot be recalled. Every view is in your audit log." }),
    h("label", { for: "share-days" }, "Days the link works (1-30)"), days,
    base ? go : null, out);
}
