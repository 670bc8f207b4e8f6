"""Pretrained weights shipped in the package (``mnistgen/pretrained/NAME.safetensors`` + ``NAME.json``).

The weights are the sampling weights of a finished run (a GAN's or flow's EMA), stored as
safetensors (loading runs no code) in float16 where a tensor is floating point, which halves the
package; the record beside them holds the resolved config, how the run was made (seed, minutes,
the command that remakes it: ``benchmarks/train_pretrained.py``) and the ``mnistgen evaluate``
scores of these very weights, float16 and all.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import MnistgenError
from .fileio import atomic_write, atomic_write_text

if TYPE_CHECKING:
    import torch
# torch, safetensors and the models are imported where weights are read or written: listing the
# shipped names (`mnistgen presets`) must start without them.

FOLDER_ENV = "MNISTGEN_PRETRAINED_DIR"  # tests point this at weights of their own
REMEDY = (f"reinstall mnistgen, or for weights of your own in ${FOLDER_ENV}, export them again "
          f"(mnistgen.pretrained.export_run)")


def pretrained_dir() -> Path:
    return Path(os.environ.get(FOLDER_ENV) or str(resources.files("mnistgen") / "pretrained"))


def pretrained_names() -> list[str]:
    folder = pretrained_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors") if (folder / f"{p.stem}.json").is_file())


def read_record(name: str) -> dict[str, Any]:
    """The record beside the weights ``name``: a JSON object that holds at least the run's ``config``."""
    names = pretrained_names()
    if name not in names:
        shipped = ", ".join(names) if names else "none are shipped in this installation"
        raise MnistgenError(f"no pretrained weights named {name!r}; pretrained: {shipped}")
    path = pretrained_dir() / f"{name}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # cut short, not JSON, not UTF-8, or unreadable
        raise MnistgenError(f"{path} cannot be read ({exc.__class__.__name__}: {exc}); {REMEDY}") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise MnistgenError(f"{path} holds no config of the run that made the weights; {REMEDY}")
    return record


def load_pretrained(name: str, device: str | torch.device = "cpu") -> tuple[Any, Config]:
    """The pretrained model ``name`` (e.g. ``gan``) in eval mode, in float32, and its config."""
    from safetensors.torch import load_file

    from .models import build_model

    record = read_record(name)
    try:
        cfg = Config.from_dict(record["config"])
    except (MnistgenError, TypeError, ValueError) as exc:  # a hand-edited record: wrong keys or types
        raise MnistgenError(f"{pretrained_dir() / f'{name}.json'}: its config is not valid ({exc}); {REMEDY}") from None
    model = build_model(cfg.model, **cfg.model_args)
    path = pretrained_dir() / f"{name}.safetensors"
    try:
        weights = load_file(str(path))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    except Exception as exc:  # safetensors and load_state_dict raise many types for a damaged file
        raise MnistgenError(f"{path} is damaged or does not fit {cfg.model!r} ({exc.__class__.__name__})") from exc
    return model.to(device).eval(), cfg


def export_run(run: str | os.PathLike, name: str, out_dir: str | os.PathLike, record: dict[str, Any],
               half: bool = True) -> Path:
    """Write the sampling weights of ``run`` as ``out_dir/name.safetensors`` (float16 when ``half``) and
    ``record`` (plus the config) as ``name.json``; returns the weights' path."""
    from safetensors.torch import save

    from .sampling import load_trained_model

    model, cfg = load_trained_model(run)
    weights = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    blob = save(weights)
    atomic_write(path, lambda fh: fh.write(blob))
    atomic_write_text(out / f"{name}.json", json.dumps({**record, "config": cfg.to_dict(),
                                                        "storage": "float16" if half else "float32"}, indent=2) + "\n")
    return path


__all__ = ["pretrained_dir", "pretrained_names", "read_record", "load_pretrained", "export_run"]
