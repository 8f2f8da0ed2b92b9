"""Print benchmark JSON reports as the Markdown tables BENCHMARKS.md shows: ``python -m benchmarks.report a.json ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .run import format_markdown, format_table


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    text = "--text" in argv
    for path in [a for a in argv if a != "--text"]:
        report = json.loads(Path(path).read_text())
        print(format_table(report) if text else format_markdown(report))
        print()


if __name__ == "__main__":
    main()
