// Share links in the owner's app: the list (retained ShareState on owners/{o}/shares/{id}, completed
// by the service's `shares` RPC) with a browser-signed revoke. Links are made by
// `doorbell owner share CLIP` (docs/sharing.md); the link's key was shown once and is kept nowhere.
import { neutralise, fmtTime } from "./text.js";

export function shareState(s, now = Date.now() / 1000) {
  return s.state === "active" && s.expires_at <= now ? "expired" : s.state;
}

/** The "Share links" part of the Shared screen; `h` is the app's DOM helper, `onRevoke(share)` asks to confirm. */
export function sharesSection(h, shares, onRevoke) {
  const rows = [...shares.values()].map((s) => ({ ...s, state: shareState(s) }))
    .sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
  return h("section", { "aria-labelledby": "sh-title", id: "shares" },
    h("h3", { id: "sh-title", text: "Share links" }),
    h("p", { class: "muted", text: "Links anyone can open (`doorbell owner share CLIP`). Every view is in your audit log; revoking a link stops it at once." }),
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
