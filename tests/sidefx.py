"""Side effects a test can observe whichever executor runs the step: files, not Python objects.

A step body on a worker process or a Dask worker cannot append to the test's list or wait on its
``threading.Event``; these helpers keep the same stories readable on every executor.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Trail:
    """An append-only log of values, one JSON line each (appends of a line are atomic)."""

    path: str

    def add(self, value: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(value) + "\n")

    def items(self) -> list[Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh]
        except FileNotFoundError:
            return []


@dataclass(frozen=True)
class Gate:
    """Closed until the test opens it; a step waits at it (polling a file)."""

    path: str

    def open(self) -> None:
        Path(self.path).touch()

    def wait(self, timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True


@dataclass(frozen=True)
class Barrier:
    """*parties* step bodies wait here until all have arrived."""

    folder: str
    parties: int

    def wait(self, timeout: float = 60) -> None:
        os.makedirs(self.folder, exist_ok=True)
        Path(self.folder, uuid.uuid4().hex).touch()
        end = time.monotonic() + timeout
        while len(os.listdir(self.folder)) < self.parties:
            if time.monotonic() > end:
                raise TimeoutError(f"only {len(os.listdir(self.folder))} of {self.parties} arrived")
            time.sleep(0.01)


def peak_overlap(spans: list[list[float]]) -> int:
    """The most (start, end) spans open at one moment."""
    marks = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda m: (m[0], m[1]))
    best = now = 0
    for _, step in marks:
        now += step
        best = max(best, now)
    return best
