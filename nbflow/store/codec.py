"""Value encoding: JSON when the value round-trips as JSON (readable and editable in the
widget and the CLI), else cloudpickle; values above a size threshold live in files."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from .._jsontext import json_text
from ..errors import SerializationError

JSON = "json"
PICKLE = "pickle"
REF = "ref"  # bytes are a res://sha256/<hex> reference to a file in the artifact folder

LARGE_VALUE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value as stored: its codec and its bytes (for REF, the reference text)."""

    codec: str
    data: bytes
    blob: dict[str, Any] | None = None  # the blobs row to write, for a REF
    fresh: bool = False  # for a REF: this write created the file (removed again if no row comes to reference it)


def encode(value: Any, what: str = "value") -> Encoded:
    """Encode *value*; *what* names it in the error when neither codec can (e.g. "output of step 'load'")."""
    text = json_text(value)
    if text is not None:
        try:
            return Encoded(JSON, text.encode())
        except UnicodeEncodeError:  # lone surrogates (e.g. undecodable file names): JSON text, not UTF-8
            pass
    try:
        return Encoded(PICKLE, cloudpickle.dumps(value))
    except Exception as exc:  # noqa: BLE001 - cloudpickle may raise anything: name the value's type
        raise SerializationError(
            f"cannot store the {what}: a value of type {type(value).__module__}.{type(value).__qualname__} "
            f"is neither JSON nor picklable ({type(exc).__name__}: {exc}); return plain data or a picklable object"
        ) from None


def decode(codec: str | None, data: bytes | None) -> Any:
    if codec is None or data is None:
        return None
    if codec == JSON:
        return json.loads(data)
    if codec == PICKLE:
        return cloudpickle.loads(data)
    raise SerializationError(f"unknown codec {codec!r}; this store was written by a newer nbflow")


def private_dirs(path: Path, made: list[Path] | None = None) -> None:
    """Create folder *path* and its missing parents owner-only (0700): a store's folders hold values and
    logs that other local users must not read. Folders that already exist keep their mode. Each folder
    this call makes goes to the front of *made* as soon as it exists (so a caller can undo them)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another thread or process made it meanwhile
            continue
        if made is not None:
            made.insert(0, folder)


class Artifacts:
    """Content-addressed files for large values: ``<root>/sha256/<hex>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, enc: Encoded) -> tuple[str, str, int, bool]:
        """Write the bytes once; return (reference, hash, size, whether this call created the file)."""
        digest = hashlib.sha256(enc.data).hexdigest()
        path = self.root / "sha256" / digest
        created = not path.exists()
        if created:
            private_dirs(path.parent)
            # A temporary name of its own: threads and processes may store the same value at once.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest}.", suffix=".tmp")  # mode 0o600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(enc.data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:  # e.g. the disk is full: leave no partial file behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return f"res://sha256/{digest}", digest, len(enc.data), created

    def remove(self, digest: str) -> None:
        """Delete the file of *digest*, if it is there."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / "sha256" / digest).unlink()

    def get(self, ref: str) -> bytes:
        prefix = "res://sha256/"
        if not ref.startswith(prefix):
            raise SerializationError(f"bad artifact reference {ref!r}")
        path = self.root / "sha256" / ref[len(prefix):]
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SerializationError(
                f"artifact {ref} is missing from {self.root}; the store's artifact folder was moved or deleted"
            ) from None
