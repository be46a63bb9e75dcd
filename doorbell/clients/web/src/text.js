// Text from outside (an agency's case, reason, legal basis) is shown neutralised: controls,
// bidi overrides and invisible format characters become visible ⟨U+XXXX⟩ marks, so text
// cannot reorder or hide what the owner reads. Always inserted with textContent, never HTML.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}\p{Cn}]/gu;

export function neutralise(value, max = 2000) {
  const s = String(value ?? "");
  const out = s.replace(HIDDEN, (c) => (c === "\n" ? " " : `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`));
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
