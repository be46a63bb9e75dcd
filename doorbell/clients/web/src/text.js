// Text another party wrote (an agency's case, reason, legal basis; a device's name; a linked
// device's label) is shown neutralised, with the same policy as doorbell/core/text.py
// neutralise(): every control (Cc, line and paragraph separators), format (Cf: zero-width,
// bidi overrides and isolates, BOM), private, unassigned or surrogate code point, and the
// letters that render as nothing, is shown visibly as \u{xxxx}, so text cannot reorder
// itself or hide words in what the owner reads. Always inserted with textContent, never HTML.
const ESCAPED = /[\p{Cc}\p{Zl}\p{Zp}\p{Cf}\p{Co}\p{Cn}\p{Cs}\u115f\u1160\u3164\uffa0\u2800]/gu;

export function neutralise(value, max = 2000) {
  const s = String(value ?? "");
  const out = s.replace(ESCAPED, (c) => `\\u{${c.codePointAt(0).toString(16).padStart(4, "0")}}`);
  return out.length > max ? out.slice(0, max) + "…" : out;
}

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "-";
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, "0");
  const tz = -d.getTimezoneOffset();
  const zone = tz === 0 ? "UTC" : `UTC${tz > 0 ? "+" : "-"}${p(Math.floor(Math.abs(tz) / 60))}:${p(Math.abs(tz) % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${zone}`;
}

export function fmtDuration(seconds) {
  seconds = Math.max(0, seconds);
  if (seconds >= 86400) { const d = seconds / 86400; return Math.abs(d - Math.round(d)) < 0.05 ? `${Math.round(d)} day${Math.round(d) !== 1 ? "s" : ""}` : `${d.toFixed(1)} days`; }
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds >= 60) return `${Math.round(seconds / 60)} min`;
  return `${seconds.toFixed(1)} s`;
}
