"""The training loop of MeanFlow: the flow family's (``flow.py``) plus a warm start. A new run with
``init_from`` (a run folder, a checkpoint, or ``pretrained:NAME``) begins from a trained
flow_matching network: its weights (the EMA's, which the flow samples from) go into MeanFlow's
network, whose interval embedding starts at zero, so that at step 0 u(z, r, t) is the flow's own
prediction at (z, t) for every r. A resumed run continues from its checkpoint and never reads
``init_from`` again (that run may be gone by then)."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..errors import MnistgenError
from ..models import DigitModel, FlowModel
from ..models.meanflow import MeanFlow
from .flow import FlowTrainer

PRETRAINED_PREFIX = "pretrained:"
# What a flow's network and MeanFlow's must agree on for the weights to fit and to mean the same thing.
SHARED_ARGS = ("width", "blocks", "attention", "patch", "num_classes", "target")


def read_flow(source: str, setting: str = "init_from") -> tuple[DigitModel, Config]:
    """The sampling model of a run folder, a checkpoint or shipped weights (``pretrained:NAME``);
    ``setting`` names the option that gave ``source`` in an error."""
    from ..pretrained import load_pretrained
    from ..sampling import load_trained_model

    try:
        if source.startswith(PRETRAINED_PREFIX):
            return load_pretrained(source.removeprefix(PRETRAINED_PREFIX))
        return load_trained_model(source)
    except MnistgenError as exc:
        raise MnistgenError(f"{setting} {source}: {exc}") from None


def check_fits(source: str, flow_cfg: Config, model_args: dict[str, Any], setting: str = "init_from") -> None:
    """Refuse weights of another model, or of a network shaped or trained otherwise, in one line."""
    if flow_cfg.model != "flow_matching":
        raise MnistgenError(f"{setting} {source} is a run of model {flow_cfg.model!r} (preset {flow_cfg.preset}); "
                            f"it must be a flow_matching run (e.g. of the flow preset)")
    differ = [f"{name} {flow_cfg.model_args.get(name)!r} there, {model_args[name]!r} here" for name in SHARED_ARGS
              if flow_cfg.model_args.get(name) != model_args[name]]
    if differ:
        raise MnistgenError(f"{setting} {source}: its network differs from this one ({'; '.join(differ)}); "
                            f"set model_args to match it")


def warm_start(model: MeanFlow, model_args: dict[str, Any], source: str) -> None:
    """``model``'s network given the network weights of the flow in ``source``; the interval
    embedding, which the flow lacks, keeps its initial zero output."""
    flow, flow_cfg = read_flow(source)
    check_fits(source, flow_cfg, model_args)
    assert isinstance(flow, FlowModel)  # check_fits refused every model but flow_matching
    # Strict: every weight of the flow must find its place; only the interval embedding keeps its own.
    model.net.load_state_dict({**model.net.state_dict(), **flow.net.state_dict()})


class MeanFlowTrainer(FlowTrainer):
    model: MeanFlow  # the one model this loop trains (make_trainer picks it by the config's model)
    def prepare_new_run(self) -> None:
        """Warm start before the step-0 checkpoint, so that it holds the flow's weights. A source that
        cannot be used fails the start, which removes the new run folder (``start_run``)."""
        if self.t.init_from:
            warm_start(self.model, self.cfg.model_args, self.t.init_from)
            if self.ema is not None:  # the EMA begins where the model does
                self.ema.module.load_state_dict(self.model.state_dict())
        super().prepare_new_run()
