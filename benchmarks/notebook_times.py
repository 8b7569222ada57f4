"""Wall time of every notebook, run top to bottom in a fresh kernel: the numbers in README's lesson table.

Solutions run as CI runs them (``COURSE_BUDGET=full``, ``COURSE_STRICT=1``); lessons as a learner
who has solved nothing yet (``COURSE_BUDGET=quick``, not strict). Notebooks run one at a time, so
each has the machine to itself (unlike CI, which runs two at once); the kernel start is included.

Usage::

    python benchmarks/notebook_times.py                  # solutions and lessons
    python benchmarks/notebook_times.py --only solutions  # or: lessons
    python benchmarks/notebook_times.py --match 04       # only notebooks whose name contains 04
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"solutions": {"COURSE_BUDGET": "full", "COURSE_STRICT": "1"},
            "lessons": {"COURSE_BUDGET": "quick", "COURSE_STRICT": None}}


def run_notebook(path: Path, settings: dict[str, str | None]) -> tuple[float, str]:
    """Execute ``path`` in a fresh kernel with ``settings`` in its environment; (seconds, outcome)."""
    saved = dict(os.environ)
    for name, value in {**settings, "MPLBACKEND": "Agg"}.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        outcome = "ok"
    except CellExecutionError as error:
        outcome = "FAILED: " + str(error).strip().splitlines()[-1][:120]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return time.perf_counter() - start, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SETTINGS), help="time one folder only")
    parser.add_argument("--match", default="", help="time only notebooks whose name contains this, e.g. 04")
    args = parser.parse_args(argv)
    folders = [args.only] if args.only else list(SETTINGS)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {platform.platform()}, "
          f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    failed = False
    start_load = os.getloadavg()[0]
    for folder in folders:
        settings = SETTINGS[folder]
        print(f"\n{folder}/ ({', '.join(f'{k}={v}' for k, v in settings.items() if v)})")
        for path in sorted(p for p in (REPO / folder).glob("*.ipynb") if args.match in p.name):
            seconds, outcome = run_notebook(path, settings)
            failed |= outcome != "ok"
            print(f"  {path.name:<28} {seconds:7.1f} s  {outcome}", flush=True)
    print(f"\nload average at the start {start_load:.2f}, at the end {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
