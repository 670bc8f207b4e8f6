"""Quality against sampling steps and guidance for a trained flow-family run (issue 15 (b)).

Every (steps, guidance) pair is scored like `mnistgen evaluate RUN --steps S --guidance W`
(the same samples, seed and metrics), and timed: digits per second for the whole draw.

Run:   .venv/bin/python benchmarks/flow_sampling.py RUN_OR_CHECKPOINT [--steps 1,2,4,8,16,32]
           [--guidance 0,1,2,4] [--sampler euler|heun] [-n 10000]
       .venv/bin/python benchmarks/flow_sampling.py --replot RESULTS.json   (the plot again, nothing sampled)
Writes benchmarks/results/flow-sampling-<date>-<device>.json, .md and .png (or --out PATH without suffix).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mnistgen import plots
from mnistgen.evaluation import evaluate
from mnistgen.sampling import load_trained_model, network_calls, sample_images, set_sampling

SCORES = ("acceptable", "coverage", "inception_score", "fid", "kid", "precision", "recall")


def digits_per_second(target: str, n: int, **sampling: object) -> tuple[float, int]:
    """Digits per second for ``n`` digits, and network calls per digit."""
    model, cfg = load_trained_model(target)
    set_sampling(model, cfg.preset, **sampling)
    calls = network_calls(model)
    sample_images(model, min(n, 200))  # warm-up: first calls allocate
    started = time.perf_counter()
    sample_images(model, n)
    return n / (time.perf_counter() - started), calls


def table(rows: list[dict], real: dict) -> str:
    head = "| steps | guidance | network calls / digit | FID | precision | recall | acceptable | IS | digits/s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['guidance']:g} | {r['network_calls']} | {r['fid']:.3f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['acceptable']:.3f} | {r['inception_score']:.2f} | "
                     f"{r['digits_per_second']:,.0f} |")
    lines.append(f"| real training images | | | {real['fid']:.3f} | {real['precision']:.3f} | {real['recall']:.3f} | "
                 f"{real['acceptable']:.3f} | {real['inception_score']:.2f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", help="a flow-family run folder or checkpoint")
    parser.add_argument("--steps", default="1,2,4,8,16,32")
    parser.add_argument("--guidance", default="0,1,2,4")
    parser.add_argument("--sampler", choices=("euler", "heun"), help="default: the run's")
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="results path without suffix")
    parser.add_argument("--replot", metavar="RESULTS.json", help="only draw that result file's plot again")
    args = parser.parse_args()
    if args.replot:
        return plot(json.loads(Path(args.replot).read_text()), Path(args.replot).with_suffix(".png"))
    if not args.target:
        parser.error("give a run folder or checkpoint (or --replot RESULTS.json)")
    model, cfg = load_trained_model(args.target)
    sampler = args.sampler or getattr(model, "sampler", None)
    rows = []
    real: dict = {}
    for guidance in (float(w) for w in args.guidance.split(",")):
        for steps in (int(s) for s in args.steps.split(",")):
            sampling = {"steps": steps, "guidance": guidance, "sampler": sampler}
            result = evaluate(args.target, n=args.n, seed=args.seed, sampling=sampling)
            real = {k: result["real"][k] for k in SCORES}
            # timed on 500 digits (whole batches already): the draw is what costs, not the scoring
            speed, calls = digits_per_second(args.target, min(args.n, 500), **sampling)
            row = {"steps": steps, "guidance": guidance, "sampler": sampler, "network_calls": calls,
                   **{k: result["samples"][k] for k in SCORES}, "digits_per_second": round(speed)}
            rows.append(row)
            print(f"steps {steps:3d} guidance {guidance:g}: FID {row['fid']:.3f} precision {row['precision']:.3f} "
                  f"recall {row['recall']:.3f} acceptable {row['acceptable']:.3f} {row['digits_per_second']:,} digits/s",
                  flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"flow-sampling-{time.strftime('%Y-%m-%d')}-{device}"
    command = (f"benchmarks/flow_sampling.py {args.target} --steps {args.steps} --guidance {args.guidance} "
               f"--sampler {sampler} -n {args.n} --seed {args.seed}")
    record = {"command": command, "preset": cfg.to_dict(), "machine": platform.platform(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "samples_per_evaluation": args.n,
              "seed": args.seed, "real_data": real, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# Flow sampling: quality against steps and guidance\n\n`{command}`, "
                                      f"{torch.get_num_threads()} threads, n = {args.n} per row, seed {args.seed}\n\n"
                                      f"{table(rows, real)}\n")
    plot(record, out.with_suffix(".png"))
    print(f"wrote {out}.json, .md and .png")


def plot(record: dict, path: Path) -> None:
    """One line per guidance weight against sampling steps."""
    rows = record["rows"]
    curves = {f"guidance {w:g}": [(r["steps"], r) for r in rows if r["guidance"] == w]
              for w in dict.fromkeys(r["guidance"] for r in rows)}
    plots.quality_vs_time(curves, record["real_data"], f"{record['preset']['preset']}: quality vs sampling steps "
                          f"({rows[0]['sampler']}), n = {record['samples_per_evaluation']}", path, x_label="sampling steps")


if __name__ == "__main__":
    main()
