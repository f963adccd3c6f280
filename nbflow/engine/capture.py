"""Per-instance capture of stdout, stderr and log records, routed by a context variable so a
step's output never lands in whatever notebook cell happens to be running."""
from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from typing import Any, TextIO

_buffer: contextvars.ContextVar[io.StringIO | None] = contextvars.ContextVar("nbflow_capture", default=None)
_lock = threading.Lock()


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: writes go to the current instance's buffer, if any."""

    def __init__(self, fallback: TextIO, prefix: str = "") -> None:
        self._fallback = fallback
        self._prefix = prefix

    def write(self, text: str) -> int:
        buf = _buffer.get()
        if buf is None:
            return self._fallback.write(text)
        if self._prefix and text.strip():
            buf.write(self._prefix)
        return buf.write(text)

    def flush(self) -> None:
        if _buffer.get() is None:
            self._fallback.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buf = _buffer.get()
        if buf is not None:
            buf.write(self.format(record) + "\n")
        elif (last := logging.lastResort) is not None and record.levelno >= last.level and not _others_handle(record):
            # Outside a step this handler must change nothing: with no handler of the program's own,
            # logging prints WARNING and above to stderr ("last resort"), and still does.
            last.handle(record)


def _others_handle(record: logging.LogRecord) -> bool:
    """Whether a handler other than the capture's sees *record* (as Logger.callHandlers walks them)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(h is not _handler for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


_handler = _Handler()
_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def install() -> None:
    """Route sys.stdout/stderr and the root logger through the capture (idempotent, cheap)."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, prefix="")
        root = logging.getLogger()
        if _handler not in root.handlers:
            root.addHandler(_handler)


def step_logger(workflow: str, step: str) -> logging.Logger:
    """``ctx.log``: INFO and above, captured with the instance, not propagated to other handlers."""
    return adopt(logging.getLogger(f"nbflow.step.{workflow}.{step}"))


def adopt(logger: logging.Logger) -> logging.Logger:
    """Make *logger* a step logger in this process (a ``ctx.log`` unpickled on a worker arrives bare)."""
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def start() -> tuple[io.StringIO, contextvars.Token[io.StringIO | None]]:
    buf = io.StringIO()
    return buf, _buffer.set(buf)


def stop(token: contextvars.Token[io.StringIO | None]) -> None:
    _buffer.reset(token)
