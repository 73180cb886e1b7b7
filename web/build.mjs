// Builds the widget into ../frontdesk/web/static: the loader `widget.js` (unhashed: its URL is
// the embed snippet) and the chat frame's JS and CSS under `w/` with content hashes, plus
// `manifest.json` naming them for frontdesk/api/frame.py. Run with `npm run build`.
import { build } from "esbuild";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "frontdesk", "web", "static");
const common = { bundle: true, minify: true, target: "es2020", legalComments: "none", logLevel: "warning" };

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "w"), { recursive: true });

await build({ ...common, entryPoints: [join(here, "widget", "index.ts")], outfile: join(out, "widget.js"), format: "iife" });

const frame = await build({
  ...common,
  entryPoints: { frame: join(here, "frame", "main.ts"), style: join(here, "frame", "frame.css") },
  outdir: join(out, "w"),
  entryNames: "[name]-[hash]",
  format: "iife",
  metafile: true,
});
const names = Object.keys(frame.metafile.outputs).map((p) => basename(p));
const manifest = {
  frame_js: names.find((n) => n.startsWith("frame-") && n.endsWith(".js")),
  frame_css: names.find((n) => n.startsWith("style-") && n.endsWith(".css")),
};
writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log("built", out, manifest);
