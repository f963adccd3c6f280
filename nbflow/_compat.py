"""Small shims: for Python 3.10 (``enum.StrEnum`` arrived in 3.11), and typed faces of IPython
functions that IPython 8 leaves unannotated (they import IPython when called)."""
from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

if sys.version_info >= (3, 11):
    StrEnum = enum.StrEnum
else:  # pragma: no cover - exercised only on 3.10

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str(self.value)


def get_ipython() -> InteractiveShell | None:
    """The running IPython shell, or None outside one (raises ImportError without IPython)."""
    from IPython.core.getipython import get_ipython as ipython_shell

    shell: Callable[[], InteractiveShell | None] = ipython_shell
    return shell()


def display(obj: object) -> None:
    """IPython's rich display of *obj* in the current front end."""
    from IPython.display import display as ipython_display

    show: Callable[[object], object] = ipython_display
    show(obj)
