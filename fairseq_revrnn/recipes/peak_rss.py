"""Run a command, then print its peak resident memory as a log record.

The peak RSS of ``fairseq-train`` is the memory a user sees: model,
optimizer, data, activations and allocator slack together. The recipes run
fairseq-train through this file, which appends

    | peak_rss | {"peak_rss_mb": "779", "command": "fairseq-train"}

to the run's log (``recipes.results`` reads it). Run it by path, not with
``python -m``: importing the package would load fairseq and torch into this
parent, and on Linux a child's maximum RSS starts from its parent's at the
fork, which would hide the child's own.

    python fairseq_revrnn/recipes/peak_rss.py fairseq-train DATA ...
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

TAG = "peak_rss"


def peak_rss_mb() -> float:
    """The largest resident set of any waited-for child, in MB (ru_maxrss is in KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit("usage: python fairseq_revrnn/recipes/peak_rss.py COMMAND [ARGS...]")
    returncode = subprocess.run(argv).returncode
    record = {"peak_rss_mb": f"{peak_rss_mb():.0f}", "command": Path(argv[0]).name}
    print(f"| {TAG} | {json.dumps(record)}", flush=True)
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
