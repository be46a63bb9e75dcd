// The audit chain check of doorbell/core/auditchain.py verify_owner_view(), in the browser:
// own rows are re-digested, every link is recomputed, the view must end at the head.
import { canonical, sha256, hex, unhex } from "./canonical.js";

export const GENESIS = "0".repeat(64);

export function tsMs(ts) {
  // Python's int(round(ts * 1000)): round half to even.
  const x = ts * 1000;
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

export async function bodyDigest(row) {
  const body = { seq: row.seq, ts_ms: tsMs(row.ts), kind: row.kind, actor: row.actor, subject: row.subject,
    owner_id: row.owner_id ?? null, details_sha256: hex(await sha256(row.details)) };
  return hex(await sha256(canonical(body)));
}

export async function chainHash(prev, digest) {
  const both = new Uint8Array(64);
  both.set(unhex(prev), 0);
  both.set(unhex(digest), 32);
  return hex(await sha256(both));
}

/** {ok, checked, headSeq, headHash, bad: Map(seq -> reason)} */
export async function verifyOwnerView(view, ownerId) {
  const bad = new Map();
  const fail = (seq, reason) => { if (!bad.has(seq)) bad.set(seq, reason); };
  const rows = view.rows || [];
  let prev = view.start_prev || GENESIS;
  let expect = rows.length ? rows[0].seq : view.from_seq || 1;
  let checked = 0;
  let headSeq = expect - 1;
  for (const row of rows) {
    const seq = row.seq;
    if (seq !== expect) fail(expect, `row missing (next row is seq ${seq})`);
    let digest;
    if ("details" in row) {
      if (row.owner_id !== ownerId) fail(seq, "a full row of another owner was sent");
      digest = await bodyDigest(row);
      if (row.body_digest !== undefined && digest !== row.body_digest) fail(seq, "own row content does not match its digest (edited)");
    } else {
      digest = row.body_digest;
    }
    if ((await chainHash(prev, digest)) !== row.hash) fail(seq, "hash does not chain from the previous row (edited or deleted row)");
    prev = row.hash;
    expect = seq + 1;
    checked += 1;
    headSeq = seq;
  }
  const head = view.head;
  if (head && view.complete && (head.seq !== headSeq || head.hash !== prev)) fail(head.seq, "the view does not end at the service's head");
  return { ok: bad.size === 0, checked, headSeq, headHash: prev, bad };
}
