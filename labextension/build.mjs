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
