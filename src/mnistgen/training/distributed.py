"""Data-parallel training on torch.distributed, launched by torchrun (``mnistgen train --nproc N`` runs
``python -m torch.distributed.run --standalone --nproc-per-node N -m mnistgen train ...``).

Each of the ``size`` processes (ranks) takes its own contiguous shard of every global batch (the
preset's ``batch_size``, which must divide by ``size``); DistributedDataParallel averages the
gradients, so a step sees the same gradient as one process with the whole batch would, up to float
rounding and the random numbers (ranks draw their own). Only rank 0 writes the run folder.
The vae and flow families train through DistributedDataParallel. A GAN step calls each network more
than once before one backward pass (and WGAN-GP differentiates twice), which DDP's hooks do not
allow, so GANs average their gradients with one all-reduce before each optimizer step
(:func:`average_gradients`), which gives the same step. Their BatchNorm layers normalise over each
rank's share of the batch: SyncBatchNorm would make that the global batch, but runs only on GPUs, and
no machine with several was at hand to test it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0


def world_from_env() -> World:
    """The process's place as torchrun's environment describes it (one process when absent)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


BACKEND_ENV = "MNISTGEN_DDP_BACKEND"  # overrides the backend; tests use gloo to put 2 ranks on 1 GPU (nccl refuses)


def join(world: World, device: torch.device) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) unless alone or already in it."""
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group(os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo"))


def _collective_device() -> torch.device:
    """Where the small tensors of our own collectives live: nccl reduces only CUDA tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def leave() -> None:
    """After a finished run: wait for every rank, then leave the process group (a rank that exits while
    another still talks to it makes gloo abort)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class MethodCall(nn.Module):
    """``forward`` calls one method of the model (e.g. ``loss``), so DistributedDataParallel, which
    synchronises gradients around ``forward``, can wrap the methods our trainers call."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.model, self.method)(*args, **kwargs)


def parallel(model: nn.Module, method: str, world: World, device: torch.device) -> Any:
    """``model.<method>``, wrapped in DistributedDataParallel when there are several ranks."""
    if world.size == 1:
        return getattr(model, method)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(MethodCall(model, method), device_ids=ids)


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Every rank starts from rank 0's weights and buffers (DDP does this for the models it wraps)."""
    if world.size > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(optimizer: torch.optim.Optimizer, world: World) -> None:
    """Replace the gradients of ``optimizer``'s parameters by their mean over the ranks, in one
    all-reduce, as DDP would after the backward pass of a model it wraps."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if world.size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


def mean_over_ranks(values: dict[str, float], world: World) -> dict[str, float]:
    """Each value averaged over the ranks (the logged loss of a step is the global batch's)."""
    if world.size == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t)}


def any_rank(flags: list[bool], world: World) -> list[bool]:
    """Each flag true if it is true on any rank, so that every rank stops at the same step."""
    if world.size == 1:
        return flags
    t = torch.tensor([int(f) for f in flags], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t]


def step_seed(seed: int, rank: int, step: int) -> int:
    """The random seed of a rank's step: a function of (seed, rank, step) only, so a resumed distributed
    run draws what the uninterrupted one would have, without storing every rank's generator state."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63 - 1)


PR_SET_CHILD_SUBREAPER = 36  # prctl option (linux/prctl.h)


def launch(command: list[str]) -> int:
    """Run ``command`` (torchrun, which starts the ranks) until every process it started has ended, and
    return its exit code: 128 + the signal's number (130, 143) when Ctrl-C or SIGTERM stopped it.

    The command runs in a process group of its own, and Ctrl-C or SIGTERM here is passed on to that
    whole group once; torchrun in turn passes it on to its ranks (each in a session of its own), which
    save their step and stop. Without this a signal ends this process alone and the ranks train on."""
    adopt_orphans()
    received: list[int] = []
    process = subprocess.Popen(command, process_group=0)  # the group's id is the leader's pid

    def pass_on(signum: int, frame: Any) -> None:
        received.append(signum)
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:  # every process of the group has ended already
            pass

    main_thread = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        code = process.wait()
        wait_for_group(process.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 128 + received[0]
    return 128 - code if code < 0 else code  # -N: the leader was killed by signal N


def adopt_orphans() -> None:
    """Become the parent of descendants whose own parent ends first (Linux), so that their end can be
    waited for and their exit status collected: adopted by PID 1 instead, they may stay zombies (some
    containers' first process collects none), which look alive to a signal. Elsewhere a no-op."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def wait_for_group(group: int) -> None:
    """Return once no process of ``group`` is left: collect those that are our children (adopted
    ones included), and poll for any others."""
    while True:
        try:
            os.waitpid(-group, 0)
            continue
        except ChildProcessError:  # none of the group is our child (any more)
            pass
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
