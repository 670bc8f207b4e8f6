"""``mnistgen serve``: a local web page to explore trained models by hand, and the small HTTP API that
the page itself uses (so scripts can use it too).

Flask answers the requests (routing, JSON, error pages) and waitress serves them: a pure-Python WSGI
server with a pool of threads, so a slow request (a flow model's samples) does not hold up the
others. Only the models named at start are served, by name: no part of a request ever becomes a
path. Every parameter is checked with the config schema's rules; a bad one is a 4xx answer with
a one-line JSON ``{"error": ...}``, plus ``"parameter"`` naming the query parameter at fault where
one is (the page shows the message beside that field).

Endpoints (all GET unless said):
  /                      the page
  /api/models            JSON list of the models and what each can do, and whether each one's latent
                         directions are "ready", "computing" or "failed" (found in the background at start)
  /api/sample            PNG grid: model, digit, n, seed, temperature, steps, guidance
  /api/samples           the same draw as JSON: one PNG data URL and one classifier verdict per digit
  /api/interpolate       JSON: the path between the samples of seeds a and b (points images)
  /api/latent            JSON: one decoded digit at a point of the latent: x, y on a 2-D VAE's plane,
                         else c1, c2, c3 steps along the latent's first principal directions from seed's latent
  /api/plane             JSON: a 2-D VAE's plane as one picture, cells x cells decoded digits over [-3, 3]^2
  /api/classify (POST)   JSON body {"pixels": 784 numbers in [0, 1]}: the reference classifier's
                         probabilities (ten digits and "not a digit"); with model=VAE also its reconstruction
"""


from __future__ import annotations

import atexit
import base64
import copy
import errno
import functools
import json
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from .classifier import NOT_A_DIGIT, load_classifier
from .config import MODEL_ARG_RULES, Config, Rule
from .data import load_dataset, to_float_images
from .errors import MnistgenError
from .images import grid_png
from .metrics import DEFAULT_THRESHOLD, classify
from .models import VAE, FlowModel
from .pretrained import load_pretrained, pretrained_names
from .sampling import first_latent, interpolation, load_trained_model, set_sampling
from .training import resolve_device

MOST_SAMPLES = 100  # per request: a grid of 100 is the page's largest, and keeps each answer under a second or two
MOST_POINTS = 16
MOST_STEPS = 64  # flow steps per request (the CLI allows more; a server shares its CPU)
MOST_BODY = 64 * 1024
DIRECTIONS = 3  # sliders along the first principal directions of the latent
PLANE_EXTENT = 3.0  # a 2-D VAE's plane is shown from -3 to 3 in both coordinates
PLANE_CELLS = 15  # the plane's map: 15 x 15 decoded digits
MOST_CELLS = 20

SEED = Rule(int, low=0, high=2**32 - 1)
QUERY_RULES: dict[str, Rule] = {
    "digit": Rule(int, low=0, high=9),
    "n": Rule(int, low=1, high=MOST_SAMPLES),
    "seed": SEED, "a": SEED, "b": SEED,
    "points": Rule(int, low=2, high=MOST_POINTS),
    "temperature": Rule(float, low=0, high=5, low_open=True),
    "steps": Rule(int, low=1, high=MOST_STEPS),
    "guidance": MODEL_ARG_RULES["guidance"],
    "x": Rule(float, low=-PLANE_EXTENT, high=PLANE_EXTENT),
    "y": Rule(float, low=-PLANE_EXTENT, high=PLANE_EXTENT),
    "cells": Rule(int, low=2, high=MOST_CELLS),
    **{f"c{k + 1}": Rule(float, low=-4, high=4) for k in range(DIRECTIONS)},
}
SAMPLING = ("temperature", "steps", "guidance")
PIXELS_WANTED = "pixels must all be numbers in [0, 1]"

log = logging.getLogger(__name__)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, parameter: str | None = None):
        super().__init__(message)
        self.status = status
        self.parameter = parameter  # the query parameter at fault, if one is: the page marks its field


@dataclass
class ServedModel:
    name: str
    model: VAE | Any
    cfg: Config
    source: str
    directions: tuple[torch.Tensor, torch.Tensor] | None = None  # (unit vectors (k, dim), spreads (k,)), on the CPU
    directions_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def latent_plane(self) -> bool:
        m = self.model
        return isinstance(m, VAE) and m.latent_dim == 2 and not m.num_classes

    def directions_state(self) -> str | None:
        """Where finding the latent directions stands: "ready", "failed" or "computing"; None for a 2-D
        VAE, whose page shows its plane instead."""
        if self.latent_plane:
            return None
        if self.directions is not None:
            return "ready"
        return "failed" if self.directions_error else "computing"

    def describe(self) -> dict[str, Any]:
        m = self.model
        state = self.directions_state()
        return {"name": self.name, "preset": self.cfg.preset, "family": self.cfg.family, "source": self.source,
                "conditional": bool(m.num_classes), "latent_dim": m.latent_dim,
                "latent_plane": self.latent_plane, "reconstructs": isinstance(m, VAE),
                "sampling": {"temperature": m.temperature,
                             **({"steps": m.steps, "guidance": m.guidance} if isinstance(m, FlowModel) else {})},
                "directions": state, **({"directions_error": self.directions_error} if state == "failed" else {})}


def load_models(runs: Sequence[str | Path], pretrained: bool = False) -> dict[str, ServedModel]:
    """The run folders (or checkpoints) to serve, each by its run folder's name, made unique, and with
    ``pretrained`` the shipped weights as ``pretrained-NAME``. On the CPU: ``Explorer`` moves them."""
    served: dict[str, ServedModel] = {}
    if pretrained:
        names = pretrained_names()
        if not names:
            raise MnistgenError("--pretrained: no pretrained weights are shipped in this installation")
        for name in names:
            model, cfg = load_pretrained(name)
            served[f"pretrained-{name}"] = ServedModel(f"pretrained-{name}", model, cfg, "pretrained")
    for run in runs:
        path = Path(run)
        model, cfg = load_trained_model(path)
        base = path.name
        if path.is_file():  # RUN/checkpoints/last.pt is named after RUN
            base = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        name, k = base, 2
        while name in served:
            name, k = f"{base}-{k}", k + 1
        served[name] = ServedModel(name, model, cfg, f"run {path}")
    return served


def data_url(images: torch.Tensor, scale: int = 4) -> list[str]:
    return ["data:image/png;base64," + base64.b64encode(grid_png(img[None], ncols=1, scale=scale)).decode()
            for img in images]


class Explorer:
    """What the endpoints do, apart from HTTP: sampling, paths, latents, classification.

    Models and the classifier run on ``device``; random numbers are drawn on the CPU (the same digits
    for a seed on every device) and answers come back to the CPU."""

    direction_samples = 1000  # generated digits whose principal components give a GAN's or flow's directions
    direction_batch = 250  # generated at a time: a stop waits for one batch at most

    def __init__(self, served: dict[str, ServedModel], data: str | None = None, device: str = "cpu"):
        self.served = served
        self.data = data
        self.device = resolve_device(device)
        for entry in served.values():
            entry.model.to(self.device)
        self.classifier = load_classifier()[0].to(self.device)
        self._test_images: tuple[torch.Tensor, torch.Tensor] | None = None
        self._data_lock = threading.Lock()
        self._finder: threading.Thread | None = None
        self._stopping = threading.Event()

    def model(self, name: str | None) -> ServedModel:
        if name is None:
            raise BadRequest(f"model is missing; one of: {', '.join(self.served) or '(none served)'}")
        if name not in self.served:
            raise BadRequest(f"unknown model {name!r}; served: {', '.join(self.served) or '(none)'}", 404)
        return self.served[name]

    @staticmethod
    def variant(entry: ServedModel, options: dict[str, Any]) -> Any:
        """The model with this request's sampling options, leaving the shared one as it is (requests run in
        parallel): a shallow copy shares the weights and owns its plain attributes."""
        model = copy.copy(entry.model)
        try:
            set_sampling(model, entry.cfg.preset, **{k: options.get(k) for k in SAMPLING})
        except MnistgenError as exc:
            message = str(exc).replace("--", "")
            raise BadRequest(message, parameter=next((k for k in SAMPLING if message.startswith(k)), None)) from None
        return model

    def decode(self, model: Any, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images on the CPU for latents (and digits: int labels or blended rows) given on the CPU."""
        return model.decode_latents(z.to(self.device), None if labels is None else labels.to(self.device)).cpu()

    def verdicts(self, images: torch.Tensor) -> list[dict[str, Any]]:
        probs = classify(self.classifier, images.to(self.device).float()).probs.float().cpu()
        out = []
        for row in probs:
            p, label = row.max(0)
            digit = int(label) != NOT_A_DIGIT
            out.append({"label": str(int(label)) if digit else "not a digit", "p": round(float(p), 3),
                        "acceptable": digit and float(p) >= DEFAULT_THRESHOLD})
        return out

    @staticmethod
    def labels(entry: ServedModel, digit: int | None, n: int) -> torch.Tensor | None:
        if digit is None:
            return None
        if not entry.model.num_classes:
            raise BadRequest(f"digit: model {entry.name} is not class-conditional; leave digit out", parameter="digit")
        return torch.full((n,), digit, dtype=torch.long)

    @torch.no_grad()
    def sample(self, entry: ServedModel, q: dict[str, Any]) -> torch.Tensor:
        n = q.get("n", 16)
        model = self.variant(entry, q)
        gen = torch.Generator().manual_seed(q.get("seed", 0))
        return model.sample(n, generator=gen, labels=self.labels(entry, q.get("digit"), n)).cpu()

    @torch.no_grad()
    def latent_of_seed(self, entry: ServedModel, model: Any, seed: int,
                       digit: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latent and digit that ``sample`` draws for the first image of ``seed`` (same random stream)."""
        self.labels(entry, digit, 1)  # refuses a digit for an unconditional model, naming the parameter
        return first_latent(model, seed, digit)

    @torch.no_grad()
    def interpolate(self, entry: ServedModel, q: dict[str, Any]) -> torch.Tensor:
        """The walk between the first digits of seeds ``a`` and ``b`` (as the API's Model.interpolate)."""
        model = self.variant(entry, q)
        self.labels(entry, q.get("digit"), 1)  # refuses a digit for an unconditional model, naming the parameter
        return interpolation(model, q.get("a", 0), q.get("b", 1), q.get("points", 8), q.get("digit")).cpu()

    def test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first 2,000 test digits, as floats, and their labels as int64: a class-conditional model
        one-hots them, which only int64 allows (Keras' mnist.npz stores uint8 labels)."""
        with self._data_lock:
            if self._test_images is None:
                mnist = load_dataset(self.data)
                self._test_images = (to_float_images(mnist.x_test[:2000]), torch.as_tensor(mnist.y_test[:2000]).long())
            return self._test_images

    def start_finding_directions(self) -> threading.Thread:
        """Find every model's latent directions in a background thread, one model after another. A flow's
        take seconds to tens of seconds on a CPU: meanwhile /api/models says "computing" (the page shows
        it) and other requests are answered; a request that needs them waits for them. Started once."""
        if self._finder is None:
            self._finder = threading.Thread(target=self._find_all_directions, name="latent-directions", daemon=True)
            atexit.register(self.stop_finding_directions)
            self._finder.start()
        return self._finder

    def stop_finding_directions(self, timeout: float = 30.0) -> None:
        """Stop the background thread between two batches and wait for it: a thread still inside a torch
        operation when the interpreter exits aborts the process ("terminate called ...")."""
        self._stopping.set()
        if self._finder is not None:
            self._finder.join(timeout)

    def _find_all_directions(self) -> None:
        for entry in self.served.values():
            if self._stopping.is_set():
                break
            if not entry.latent_plane:
                try:
                    self.principal_directions(entry)
                except BadRequest:
                    pass  # kept in the entry: /api/models and /api/latent say it
        atexit.unregister(self.stop_finding_directions)

    def principal_directions(self, entry: ServedModel) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's latent directions, found once; a request for them while the background thread is
        finding them waits for it. A failure is kept and answered as a 503."""
        with entry.lock:
            if entry.directions is None and entry.directions_error is None:
                try:
                    entry.directions = self.find_directions(entry.model)
                except Exception as exc:  # the data missing, or a model that cannot decode: said, not fatal
                    if not self._stopping.is_set():
                        log.exception("finding the latent directions of %s failed", entry.name)
                    entry.directions_error = str(exc) if isinstance(exc, MnistgenError) else repr(exc)
            if entry.directions_error is not None:
                raise BadRequest(f"the latent directions of {entry.name} could not be found: {entry.directions_error}",
                                 503)
            assert entry.directions is not None  # found above, or its error kept and raised instead
            return entry.directions

    @torch.no_grad()
    def find_directions(self, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit directions (k, latent_dim) and spreads (k,), on the CPU. A VAE's: principal components of
        the encoded test digits. A GAN's or flow's latent is isotropic noise, so its directions are found
        from what they do to the images (as GANSpace does): principal components of generated digits,
        each mapped back to the latent direction that predicts it best (least squares)."""
        if isinstance(model, VAE):
            images, test_labels = self.test_images()
            conditioned_on = test_labels.to(self.device) if model.num_classes else None
            z = model.encode(images.to(self.device), conditioned_on)[0].cpu()
            _, s, v = torch.linalg.svd(z - z.mean(0), full_matrices=False)
            return v[:DIRECTIONS], s[:DIRECTIONS] / (len(z) - 1) ** 0.5
        gen = torch.Generator().manual_seed(0)
        n = self.direction_samples
        z = torch.randn(n, model.latent_dim, generator=gen)
        labels = torch.randint(model.num_classes, (n,), generator=gen) if model.num_classes else None
        batches = []
        step = self.direction_batch
        for i in range(0, n, step):
            if self._stopping.is_set():
                raise MnistgenError("the server is stopping")
            batches.append(self.decode(model, z[i:i + step], None if labels is None else labels[i:i + step]).flatten(1))
        images = torch.cat(batches)
        centred = images - images.mean(0)
        _, _, pcs = torch.linalg.svd(centred, full_matrices=False)
        scores = centred @ pcs[:DIRECTIONS].T  # (n, k)
        directions = torch.linalg.lstsq(z, scores).solution.T  # (k, latent_dim)
        return directions / directions.norm(dim=1, keepdim=True), torch.ones(DIRECTIONS)

    @torch.no_grad()
    def latent(self, entry: ServedModel, q: dict[str, Any]) -> torch.Tensor:
        model = self.variant(entry, q)
        if entry.latent_plane:
            missing = [k for k in ("x", "y") if k not in q]
            if missing:
                raise BadRequest(f"{' and '.join(missing)} missing: a point of the 2-D latent plane")
            return self.decode(model, torch.tensor([[q["x"], q["y"]]], dtype=torch.float32))
        if "x" in q or "y" in q:
            raise BadRequest(f"x, y: model {entry.name} has no 2-D latent plane; use c1..c{DIRECTIONS}",
                             parameter="x" if "x" in q else "y")
        z, labels = self.latent_of_seed(entry, model, q.get("seed", 0), q.get("digit"))
        directions, spreads = self.principal_directions(entry)
        steps = torch.tensor([q.get(f"c{k + 1}", 0.0) for k in range(DIRECTIONS)])
        z = z + (steps * spreads) @ directions
        return self.decode(model, z[None], labels)

    @torch.no_grad()
    def plane_map(self, entry: ServedModel, cells: int) -> torch.Tensor:
        """A 2-D VAE's plane as one picture (1, cells * 28, cells * 28): the digit decoded at the centre of
        each of cells x cells squares tiling [-PLANE_EXTENT, PLANE_EXTENT]^2, x to the right, y upwards,
        so that a point of the picture and the same point of the plane decode alike."""
        if not entry.latent_plane:
            raise BadRequest(f"model {entry.name} has no 2-D latent plane to map (a VAE with a 2-D latent and no "
                             "digit conditioning has one)")
        centres = ((torch.arange(cells) + 0.5) / cells * 2 - 1) * PLANE_EXTENT
        ys, xs = torch.meshgrid(centres.flip(0), centres, indexing="ij")
        digits = self.decode(entry.model, torch.stack([xs.flatten(), ys.flatten()], dim=1))[:, 0]
        return digits.reshape(cells, cells, 28, 28).permute(0, 2, 1, 3).reshape(1, cells * 28, cells * 28)

    @torch.no_grad()
    def read_drawing(self, entry: ServedModel | None, body: Any) -> dict[str, Any]:
        image = drawing_pixels(body).reshape(1, 1, 28, 28).to(self.device)
        probs = classify(self.classifier, image).probs.float()[0]
        answer: dict[str, Any] = {
            "probabilities": {("not a digit" if i == NOT_A_DIGIT else str(i)): round(float(p), 4)
                              for i, p in enumerate(probs)},
            "verdict": self.verdicts(image)[0]}
        if entry is not None:
            if not isinstance(entry.model, VAE):
                raise BadRequest(f"model {entry.name} has no encoder to reconstruct with (VAEs only)")
            model = entry.model
            label = probs[:NOT_A_DIGIT].argmax()[None] if model.num_classes else None
            mu, _ = model.encode(image, label)
            answer["reconstruction"] = data_url(model.decode_latents(mu, label).cpu())[0]
        return answer


def drawing_pixels(body: Any) -> torch.Tensor:
    """The 784 pixels of a POSTed drawing, checked: JSON numbers in [0, 1]; true/false are not numbers
    here, though Python would count them as 1 and 0."""
    pixels = body.get("pixels") if isinstance(body, dict) else None
    if not isinstance(pixels, list) or len(pixels) != 28 * 28:
        raise BadRequest("the body must be JSON {\"pixels\": [784 numbers in [0, 1]]} (28 x 28, row by row)")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pixels):
        raise BadRequest(f"{PIXELS_WANTED} (not true/false, text, null or lists)")
    try:
        image = torch.tensor([float(p) for p in pixels], dtype=torch.float32)
    except OverflowError:  # a whole number too large for a float
        raise BadRequest(PIXELS_WANTED) from None
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise BadRequest(PIXELS_WANTED)
    return image


def json_body() -> Any:
    """The request's body parsed as JSON. Malformed JSON, bytes that are no text, and nesting too deep
    for the parser (it recurses: RecursionError) are the client's fault: a 400, not a 500."""
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON; send {\"pixels\": [784 numbers in [0, 1]]}") from None


def parse_query(args: dict[str, str], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Checked query parameters; an unknown one is refused too (a typo must not pass silently)."""
    unknown = sorted(set(args) - set(allowed) - {"model"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; this endpoint takes: {', '.join(('model',) + allowed)}")
    q: dict[str, Any] = {}
    for name, text in args.items():
        if name == "model":
            continue
        rule = QUERY_RULES[name]
        try:
            q[name] = rule.coerce(int(text) if rule.kind is int else float(text))
        except ValueError:
            raise BadRequest(f"{name} must be {rule.describe()}, not {text[:40]!r}", parameter=name) from None
    return q


def checked_endpoint(explorer: Explorer, allowed: tuple[str, ...], needs_model: bool = True) -> Callable:
    """A decorator: the route's body gets (the model entry asked for, or None, and the checked query)."""

    def wrap(fn: Callable) -> Callable:
        def view() -> Any:
            q = parse_query(request.args.to_dict(flat=True), allowed)
            name = request.args.get("model")
            entry = explorer.model(name) if needs_model or name is not None else None
            return fn(entry, q)

        view.__name__ = fn.__name__
        return view

    return wrap


def answer_errors_in_json(app: Flask) -> None:
    """Every error as JSON: a bad parameter names itself; an unexpected failure is logged and answered
    with a 500 while the server keeps serving."""

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(exc), **({"parameter": exc.parameter} if exc.parameter else {})), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{exc.code} {exc.name}: {exc.description}"), exc.code or 500

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("request failed")
        return jsonify(error=f"internal error ({exc.__class__.__name__}); the server keeps running"), 500


def create_app(explorer: Explorer) -> Flask:
    """The page and its API over ``explorer``, whose latent directions it starts finding in the background
    (the page waits for them, asking /api/models)."""
    explorer.start_finding_directions()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MOST_BODY
    page = (resources.files("mnistgen") / "web" / "index.html").read_bytes()

    endpoint = functools.partial(checked_endpoint, explorer)
    answer_errors_in_json(app)

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/api/models")
    @endpoint((), needs_model=False)
    def models(entry: None, q: dict) -> Response:
        return jsonify([m.describe() for m in explorer.served.values()])

    @app.get("/api/sample")
    @endpoint(("digit", "n", "seed") + SAMPLING)
    def sample(entry: ServedModel, q: dict) -> Response:
        images = explorer.sample(entry, q)
        return Response(grid_png(images, ncols=min(10, len(images))), mimetype="image/png")

    @app.get("/api/samples")
    @endpoint(("digit", "n", "seed") + SAMPLING)
    def samples(entry: ServedModel, q: dict) -> Response:
        images = explorer.sample(entry, q)
        return jsonify(images=data_url(images), verdicts=explorer.verdicts(images))

    @app.get("/api/interpolate")
    @endpoint(("digit", "a", "b", "points") + SAMPLING)
    def interpolate(entry: ServedModel, q: dict) -> Response:
        images = explorer.interpolate(entry, q)
        return jsonify(images=data_url(images), verdicts=explorer.verdicts(images))

    @app.get("/api/latent")
    @endpoint(("x", "y", "digit", "seed") + tuple(f"c{k + 1}" for k in range(DIRECTIONS)) + SAMPLING)
    def latent(entry: ServedModel, q: dict) -> Response:
        image = explorer.latent(entry, q)
        return jsonify(image=data_url(image)[0], verdict=explorer.verdicts(image)[0])

    @app.get("/api/plane")
    @endpoint(("cells",))
    def plane(entry: ServedModel, q: dict) -> Response:
        cells = q.get("cells", PLANE_CELLS)
        picture = explorer.plane_map(entry, cells)
        return jsonify(image=data_url(picture, scale=1)[0], cells=cells, extent=PLANE_EXTENT)

    @app.post("/api/classify")
    @endpoint((), needs_model=False)
    def classify_drawing(entry: ServedModel | None, q: dict) -> Response:
        return jsonify(explorer.read_drawing(entry, json_body()))

    return app


def check_host(host: str) -> None:
    """Refuse a --host that names no address, before the models load (which takes a while)."""
    try:
        found = bool(host) and socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError, ValueError):
        found = False
    if not found:
        raise MnistgenError(f"--host {host or repr(host)}: not an IP address or a host name that resolves to "
                            "one; give an address of this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 "
                            "(every network)")


def listen(app: Flask, host: str, port: int, threads: int) -> Any:
    """A waitress server bound to host:port; an address it cannot take is one line naming the option."""
    from waitress import create_server

    try:
        return create_server(app, host=host, port=port, threads=threads)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise MnistgenError(f"--host {host}: cannot listen there, it is no address of this machine "
                                f"({exc.strerror or exc}); e.g. 127.0.0.1 or 0.0.0.0") from None
        raise MnistgenError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    except ValueError:  # waitress's word for an address it cannot use
        raise MnistgenError(f"--host {host}: waitress cannot listen on {host}:{port}") from None


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000, data: str | None = None,
          threads: int = 4, pretrained: bool = False, device: str = "auto") -> None:
    """Load the models onto ``device`` ("auto": CUDA when there is one, else the CPU), then answer
    requests until Ctrl-C."""
    if not runs and not pretrained:
        raise MnistgenError("name at least one run folder or checkpoint to serve (e.g. runs/gan-TIMESTAMP), "
                            "or pass --pretrained")
    check_host(host)
    resolve_device(device)  # a bad one refused before the models load
    served = load_models(runs, pretrained)
    explorer = Explorer(served, data, device)
    try:
        server = listen(create_app(explorer), host, port, threads)
        print(f"serving {', '.join(served)} on http://{host}:{server.effective_port}/  (Ctrl-C stops)", flush=True)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        explorer.stop_finding_directions()
