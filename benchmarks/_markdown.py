"""BENCHMARKS.md sections: each benchmark script owns one ``## ...`` section and replaces only it."""
from __future__ import annotations

from pathlib import Path

HEADER = "# Benchmarks\n\nFigures measured by the scripts in `benchmarks/`.\n"


def write_section(path: Path, section: str) -> None:
    """Replace the section of ``path`` whose heading is ``section``'s first line (or append it).

    Every other section, and the hand-written summary at the top, stays as it is.
    """
    heading = section.split("\n", 1)[0]
    text = path.read_text() if path.is_file() else HEADER
    if f"\n{heading}\n" in f"\n{text}":
        head, _, rest = f"\n{text}".partition(f"\n{heading}\n")
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        text = head[1:] + "\n" + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
