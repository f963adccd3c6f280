// Build the widget's ESM and CSS into nbflow/notebook/static/ (shipped in the wheel; nothing is
// fetched from a CDN). `npm run build` writes them there; `npm run build -- --outdir DIR` writes
// them elsewhere (tests/test_widget.py checks the committed files are what this build makes).
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
const outdir = at >= 0 ? resolve(args[at + 1]) : join(here, "..", "nbflow", "notebook", "static");
mkdirSync(outdir, { recursive: true });

// the MIT notices of what is bundled (dagre and its graphlib share one licence text)
const licence = readFileSync(join(here, "node_modules", "@dagrejs", "dagre", "LICENSE"), "utf8").trim();
const footer = `/*! Bundled: @dagrejs/dagre and @dagrejs/graphlib (MIT)\n${licence.replaceAll("*/", "* /")}\n*/`;

// a digest of every input, written into the banner: tests/test_widget.py recomputes it to tell a
// stale bundle without needing node (the same recipe: relative path, NUL, bytes, NUL; sorted paths)
const inputs = ["build.mjs", "package-lock.json", ...readdirSync(join(here, "src")).map((f) => `src/${f}`)].sort();
const digest = createHash("sha256");
for (const rel of inputs) {
  digest.update(rel + "\0");
  digest.update(readFileSync(join(here, rel)));
  digest.update("\0");
}
const banner = `/* nbflow debugger widget: built by js/build.mjs from js/src (do not edit); sources sha256:${digest.digest("hex")} */`;

const common = {
  bundle: true,
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
  charset: "utf8",
  banner: { js: banner, css: banner },
};

await build({
  ...common,
  entryPoints: [join(here, "src", "widget.js")],
  footer: { js: footer },
  outfile: join(outdir, "widget.js"),
  format: "esm",
  target: ["es2020"],
  platform: "browser",
});
await build({
  ...common,
  entryPoints: [join(here, "src", "widget.css")],
  outfile: join(outdir, "widget.css"),
});
console.log(`built ${join(outdir, "widget.js")} and widget.css`);
