"""Whether ``amp: auto`` trains in mixed precision on this device.

On a CPU, bfloat16 autocast only pays where the CPU executes bfloat16 natively (AVX-512 BF16 or AMX on x86); elsewhere PyTorch
emulates it and a step is slower than in float32. The flow preset trained 1.5x faster per epoch under
bf16 on a CPU with native bf16 (15-minute FID 0.64 against 0.69 in float32). Even with native support
the gain depends on the model's shapes, so ``auto`` times the model both ways before it decides.
Timings are noisy, and two starts of one model could decide differently: a training run therefore
takes the decision remembered for this machine, torch and model shape (``remembered_auto``, in the
cache folder), and a resumed run keeps the one it started with (stored in its checkpoint).
On CUDA ``auto`` stays off, so that a GPU run trains as it always has; ``amp: cuda`` or ``on`` turns
float16 autocast (with a loss scaler) on there.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..fileio import atomic_write_text
from ..models.base import DigitModel

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")  # x86 and Arm names in torch.cpu.get_capabilities()
PROBE_IMAGES = 64
PROBE_REPEATS = 3
DECISIONS_FILE = "amp-auto.json"  # in the cache folder: model signature -> whether bf16 measured faster


def cpu_has_native_bf16() -> bool:
    """True where torch reports a CPU feature that executes bfloat16 arithmetic in hardware."""
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(flag) is True for flag in NATIVE_BF16_FLAGS)


def best_seconds(step: Callable[[], object], repeats: int = PROBE_REPEATS) -> float:
    """The fastest of ``repeats`` timings of ``step`` after one untimed warm-up call."""
    step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)
    return min(timings)


def bf16_is_faster(model: DigitModel) -> bool:
    """Times drawing a small batch from ``model`` in float32 and under bfloat16 autocast. It draws from a
    copy, whose BatchNorm statistics may move, in a forked random stream: the run is left exactly as it was."""
    model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        def draw(bf16: bool) -> Callable[[], object]:
            def step() -> object:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return model.sample(PROBE_IMAGES, generator=torch.Generator().manual_seed(0))
            return step
        return best_seconds(draw(True)) < best_seconds(draw(False))


def model_signature(model: DigitModel) -> str:
    """What the timing depends on: the model's class and parameter shapes, the CPU and torch's version."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    cpu = torch.cpu.get_capabilities().get("cpu_name", "")
    text = repr((type(model).__module__, type(model).__qualname__, shapes, cpu, torch.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remembered_auto(model: DigitModel, device: torch.device, folder: Path) -> bool:
    """What ``amp: auto`` means on ``device`` for ``model``: on only on a CPU with native bfloat16 that
    measures faster for this model, the timing done once per machine and model shape and remembered in
    ``folder``, so that every training run of that model here trains alike."""
    if device.type != "cpu" or not cpu_has_native_bf16():
        return False
    path = folder / DECISIONS_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: measure again
        known = {}
    key = model_signature(model)
    if not isinstance(known.get(key), bool):
        known[key] = bf16_is_faster(model)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(known, indent=1) + "\n")
        except OSError:  # a read-only cache: measured again next time
            pass
    return known[key]
