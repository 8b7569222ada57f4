"""How long the course's entry points take to start, each in a fresh Python process.

Usage: ``python benchmarks/import_times.py [--repeats 5]``. Prints the median and the minimum
wall time of:

- ``import course_lib`` (what every notebook's first cell pays before anything else);
- ``python tools/make_lessons.py --check`` (the lesson generator, as CI and maintainers run it);
- ``import torch`` alone, the floor under anything that needs tensors;
- the first check of lesson 00's exercise 00.1 in a new process, imports included; in parentheses the
  part after ``import torch`` (what the checker itself costs) and which heavy libraries (gymnasium,
  transformers, trl) that check pulled in.

Every figure in the notes about start-up time comes from this script.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FIRST_CHECK = """
import sys, io, contextlib, time
import torch
start = time.perf_counter()
from course_lib import check, distributions
with contextlib.redirect_stdout(io.StringIO()):
    check.log_prob_of_actions(distributions.log_prob_of_actions)
heavy = [m for m in ("gymnasium", "transformers", "trl") if m in sys.modules]
print(f"after torch: {time.perf_counter() - start:.2f} s; heavy modules loaded: {', '.join(heavy) or 'none'}")
"""

COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import course_lib": [sys.executable, "-c", "import course_lib"],
    "tools/make_lessons.py --check": [sys.executable, "tools/make_lessons.py", "--check"],
    "first check (00.1), fresh process": [sys.executable, "-c", FIRST_CHECK],
}


def time_command(command: list[str], repeats: int) -> tuple[list[float], str]:
    times, last = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return times, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.repeats} runs each, wall seconds")
    for label, command in COMMANDS.items():
        times, last = time_command(command, args.repeats)
        extra = f"   ({last})" if label.startswith("first check") else ""
        print(f"{label:<36} median {statistics.median(times):5.2f} s   min {min(times):5.2f} s{extra}")


if __name__ == "__main__":
    main()
