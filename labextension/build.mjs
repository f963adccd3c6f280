// Build the prebuilt JupyterLab extension into ../nbflow/labextension (shipped in the wheel):
// `npm run build` = tsc, then @jupyterlab/builder against the installed JupyterLab's staging dir
// (found with `python -c "import jupyterlab"`, or $JUPYTERLAB_STAGING).
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.PYTHON || "python";
const staging = process.env.JUPYTERLAB_STAGING ||
  join(execFileSync(python, ["-c", "import jupyterlab, os; print(os.path.dirname(jupyterlab.__file__))"], { encoding: "utf8" }).trim(), "staging");
const builder = join(here, "node_modules", "@jupyterlab", "builder", "lib", "build-labextension.js");
execFileSync(process.execPath, [builder, "--core-path", staging, here], { stdio: "inherit", cwd: here });

// Record what the bundle was built from, so a test can tell a stale committed bundle without node.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
const sources = [];
for (const dir of ["src", "style"]) {
  for (const name of readdirSync(join(here, dir)).sort()) sources.push(join(here, dir, name));
}
// the widget's view, every module of it (it is bundled into the sidebar too)
for (const name of readdirSync(join(here, "..", "js", "src")).sort()) sources.push(join(here, "..", "js", "src", name));
const digest = createHash("sha256");
for (const file of sources) digest.update(readFileSync(file));
writeFileSync(join(here, "..", "nbflow", "labextension", "sources.sha256"), digest.digest("hex") + "\n");
