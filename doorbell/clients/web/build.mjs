// Reproducible build of the owner's web app: bundle src/main.js with esbuild,
// copy the static files, write dist/. `npm ci && npm run build`.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";

const out = "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome120", "firefox128", "safari17"],
  outfile: `${out}/app.js`,
  // the age code (src/sealed.js) is a bundle of its own, loaded when a clip is first opened:
  // it stays out of the app shell (import("./sealed.js") is left as is, relative to app.js)
  external: ["./sealed.js"],
  legalComments: "external",
  logLevel: "warning",
});
await build({
  entryPoints: ["src/sealed.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome120", "firefox128", "safari17"],
  outfile: `${out}/sealed.js`,
  legalComments: "external",
  logLevel: "warning",
});
// The share-link viewer (no login): its own small bundle; the age code is the app's sealed.js chunk.
await build({
  entryPoints: ["src/share.js"],
  bundle: true,
  external: ["./sealed.js"], // the same age chunk as the app's (dist/sealed.js)
  minify: true,
  format: "esm",
  target: ["chrome120", "firefox128", "safari17"],
  outfile: `${out}/share.js`,
  legalComments: "external",
  logLevel: "warning",
});
for (const f of ["index.html", "share.html", "app.css", "manifest.webmanifest", "icon.svg", "sw.js"]) {
  cpSync(`src/${f}`, `${out}/${f}`);
}
// The service worker's cache name follows the shell's content, so a new build replaces the old shell.
const digest = createHash("sha256");
for (const f of ["index.html", "app.css", "app.js", "manifest.webmanifest", "icon.svg"]) {
  digest.update(readFileSync(`${out}/${f}`));
}
const sw = readFileSync(`${out}/sw.js`, "utf8").replace("__BUILD__", digest.digest("hex").slice(0, 16));
writeFileSync(`${out}/sw.js`, sw);
