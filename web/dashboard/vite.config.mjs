// Builds the operator dashboard (Svelte) into ../../frontdesk/web/static/dashboard: index.html and
// content-hashed assets under assets/, served by frontdesk/api/dashboard.py at /dashboard/.
// Run through `npm run build` in web/ (after the widget's build, which empties static/).
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: "/dashboard/",
  plugins: [svelte()],
  logLevel: "warn",
  build: {
    outDir: join(here, "..", "..", "frontdesk", "web", "static", "dashboard"),
    emptyOutDir: true,
    target: "es2022",
    // The polyfill would be an extra script; every browser the dashboard supports has preload.
    modulePreload: { polyfill: false },
    // Nothing becomes a data: URL; the CSP allows data: images only.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    sourcemap: false,
  },
});
