"""What a reader sees of a saved notebook cell's outputs, as text."""
from __future__ import annotations

import re
from typing import Any


def shown(outputs: list[dict[str, Any]], *, html: bool = False) -> str:
    """Streams, text/plain results (and text/html with *html*) and errors, without ANSI colour.

    Consecutive pieces of one stream are joined as Jupyter shows them: the kernel flushes a stream
    whenever it likes, so one ``print`` may arrive as several outputs.
    """
    parts: list[str] = []
    last_stream = None
    for o in outputs:
        if o["output_type"] == "stream" and o["name"] == last_stream:
            parts[-1] += o["text"]
        elif o["output_type"] == "stream":
            parts.append(o["text"])
        elif o["output_type"] in ("execute_result", "display_data"):
            parts.append(o["data"].get("text/plain", ""))
            if html:
                parts.append(o["data"].get("text/html", ""))
        elif o["output_type"] == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
        last_stream = o["name"] if o["output_type"] == "stream" else None
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))
