"""Start-up time of the command line beside `import torch`, timed as whole processes.

    .venv/bin/python benchmarks/startup.py --repeats 10 --out benchmarks/results/startup-DATE-cpu.json

Each command runs ``--repeats`` times in turn (interleaved, so a slow moment hits all of them alike);
the JSON holds every wall time, and the table the median, min and max. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "mnistgen --help": [str(BIN / "mnistgen"), "--help"],
    "mnistgen presets": [str(BIN / "mnistgen"), "presets"],
    "mnistgen train vae --minutes 0 (a bad option)": [str(BIN / "mnistgen"), "train", "vae", "--minutes", "0"],
    "python -c 'import mnistgen'": [sys.executable, "-c", "import mnistgen"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def wall_time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file cache once
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))
    rows = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs_s": t}
            for name, t in times.items()}
    record = {"command": f"python benchmarks/startup.py --repeats {args.repeats} --out {args.out}",
              "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:48s} median {row['median_s']:.3f} s  (min {row['min_s']:.3f}, max {row['max_s']:.3f})")


if __name__ == "__main__":
    main()
