// The audit chain checks of doorbell/core/auditchain.py in the browser: verify_owner_view()
// (own rows re-digested, every global link recomputed, the owner's own chain complete up to
// its head) and check_pin() (the view still contains, unchanged, what this browser verified
// last, so even a consistent rewrite of history the owner has seen is caught).
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

const isOwn = (row) => row.details !== undefined && row.details !== null;

async function ownerLink(fail, seq, row, digest, [n, prev]) {
  if (row.owner_seq === undefined || row.owner_seq === null) {
    fail(seq, "row about the owner is not on the owner's chain");
    return [n, prev];
  }
  if (row.owner_seq !== n + 1) {
    const why = row.owner_seq > n + 1 ? "rows about the owner are missing (hidden or deleted)" : "rows reordered or repeated";
    fail(seq, `the owner's chain jumps from entry ${n} to ${row.owner_seq}: ${why}`);
  }
  if (row.owner_prev !== prev) fail(seq, "owner_prev does not match the owner's previous entry (hidden, deleted or reordered row)");
  if ((await chainHash(row.owner_prev || GENESIS, digest)) !== row.owner_hash) fail(seq, "owner_hash does not match owner_prev + digest");
  return [row.owner_seq, row.owner_hash];
}

/** {ok, checked, headSeq, headHash, ownerSeq, ownerHash, bad: Map(seq -> reason), problems: [reason]} */
export async function verifyOwnerView(view, ownerId) {
  const bad = new Map();
  const problems = [];
  const fail = (seq, reason) => {
    problems.push(reason);
    if (seq !== null && !bad.has(seq)) bad.set(seq, reason);
  };
  const rows = view.rows || [];
  const fromStart = (view.from_seq || 1) === 1;
  let own = fromStart ? [0, GENESIS] : null;
  let prev = view.start_prev || GENESIS;
  let expect = rows.length ? rows[0].seq : view.from_seq || 1;
  let checked = 0;
  let headSeq = expect - 1;
  for (const row of rows) {
    const seq = row.seq;
    if (seq !== expect) fail(expect, `row missing (next row is seq ${seq})`);
    let digest;
    if (isOwn(row)) {
      if (row.owner_id !== ownerId) fail(seq, "a full row of another owner was sent");
      digest = await bodyDigest(row);
      if (row.body_digest !== undefined && digest !== row.body_digest) fail(seq, "own row content does not match its digest (edited)");
      if (own === null && row.owner_seq != null) own = [row.owner_seq - 1, row.owner_prev];
      if (own !== null) own = await ownerLink(fail, seq, row, digest, own);
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
  if (fromStart && view.complete && own !== null) {
    const oh = view.owner_head;
    if (!oh) fail(null, "the service sent no head for your own chain");
    else if (oh.seq !== own[0] || oh.hash !== own[1]) {
      fail(null, `your own chain ends at entry ${own[0]} but the service's head for it says ${oh.seq} (rows about you are missing: hidden or deleted)`);
    }
  }
  const [ownerSeq, ownerHash] = own || [0, GENESIS];
  return { ok: problems.length === 0, checked, headSeq, headHash: prev, ownerSeq, ownerHash, bad, problems };
}

/** check_pin(): the view (from seq 1) must extend what was verified last, unchanged. */
export function checkPin(view, pin, report) {
  if (!pin || !pin.seq) return report;
  const fail = (seq, reason) => {
    report.ok = false;
    report.problems.push(reason);
    if (seq !== null && !report.bad.has(seq)) report.bad.set(seq, reason);
  };
  const rows = new Map((view.rows || []).map((r) => [r.seq, r]));
  const at = rows.get(pin.seq);
  if (!at) fail(pin.seq, `history rewritten since you last verified: the log now ends before entry #${pin.seq}, which you verified (rows deleted)`);
  else if (at.hash !== pin.hash) fail(pin.seq, `history rewritten since you last verified: entry #${pin.seq} no longer has the hash you verified (an earlier row was edited, hidden, deleted or reordered)`);
  if (pin.owner_seq) {
    const mine = [...rows.values()].find((r) => r.owner_seq === pin.owner_seq && isOwn(r));
    if (!mine) fail(null, `history rewritten since you last verified: entry ${pin.owner_seq} of your own chain is gone (rows about you hidden or deleted)`);
    else if (mine.owner_hash !== pin.owner_hash) fail(mine.seq, `history rewritten since you last verified: entry ${pin.owner_seq} of your own chain changed (rows about you edited, hidden or deleted)`);
  }
  return report;
}

export const pinOf = (report, ownerId) => ({ owner_id: ownerId, seq: report.headSeq, hash: report.headHash,
  owner_seq: report.ownerSeq, owner_hash: report.ownerHash });
