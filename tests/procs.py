"""Several processes started at the same moment, as real users' kernels, CLIs and batches are."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_at_once(script: str, args: list[str], n: int, cwd: Path, timeout: float = 120) -> list[str]:
    """Start *n* ``python -c script *args`` together; assert they all succeed; return their stdouts."""
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=cwd)
        for _ in range(n)
    ]
    outs = [p.communicate(timeout=timeout) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err[-2000:] for _, err in outs]
    return [out for out, _ in outs]
