// Canonical JSON, byte for byte what doorbell/core/signing.py canonical_json() and
// doorbell/core/auditchain.py canonical() produce: keys sorted by code point, no
// whitespace, UTF-8, characters kept (ensure_ascii=False), integers only for signing.

const ESC = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

export class CanonicalError extends Error {}

function str(s) {
  // Python's json.dumps(ensure_ascii=False): escape '"', '\\' and C0 controls (short forms where
  // they exist, else \u00xx lowercase); everything else, DEL and U+2028 included, stays as is.
  if (/[\uD800-\uDFFF]/u.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""))) {
    throw new CanonicalError("lone surrogate in a string (not encodable as UTF-8)");
  }
  return '"' + s.replace(/["\\\u0000-\u001f]/g, (c) => ESC[c] || "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")) + '"';
}

function cmp(a, b) {
  // Python sorts str keys by code point; JS compares UTF-16 units. Equal for the BMP, so
  // compare code point arrays to be exact everywhere.
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

export function canonical(value, { integersOnly = false } = {}) {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new CanonicalError("not a finite number");
    if (!Number.isInteger(value)) {
      if (integersOnly) throw new CanonicalError("canonical encoding takes no floats (use integers)");
      throw new CanonicalError("floats are not used in canonical data");
    }
    if (!Number.isSafeInteger(value)) throw new CanonicalError("integer too large");
    return String(value);
  }
  if (typeof value === "string") return str(value);
  if (Array.isArray(value)) return "[" + value.map((v) => canonical(v, { integersOnly })).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(cmp);
    return "{" + keys.map((k) => str(k) + ":" + canonical(value[k], { integersOnly })).join(",") + "}";
  }
  throw new CanonicalError(`cannot encode ${typeof value}`);
}

export const utf8 = (s) => new TextEncoder().encode(s);

export function b64u(bytes) {
  let bin = "";
  for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64u(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
export const unhex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));

export async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", typeof data === "string" ? utf8(data) : data));
}

export function randomHex(nbytes) {
  return hex(crypto.getRandomValues(new Uint8Array(nbytes)));
}
