"""``mnistgen serve``: a local web page to explore trained models by hand, and the small HTTP API that
the page itself uses (so scripts can use it too).

Flask answers the requests (routing, JSON, error pages) and waitress serves them: a pure-Python WSGI
server with a pool of threads, so a slow request (a flow model's samples) does not hold up the
others. Only the models named at start are served, by name: no part of a request ever becomes a
path. Every parameter is checked with the config schema's rules; a bad one is a 4xx answer with
a one-line JSON ``{"error": ...}``.

Endpoints (all GET unless said):
  /                      the page
  /api/models            JSON list of the models and what each can do
  /api/sample            PNG grid: model, digit, n, seed, temperature, steps, guidance
  /api/samples           the same draw as JSON: one PNG data URL and one classifier verdict per digit
  /api/interpolate       JSON: the path between the samples of seeds a and b (points images)
  /api/latent            JSON: one decoded digit at a point of the latent: x, y on a 2-D VAE's plane,
                         else c1, c2, c3 steps along the latent's first principal directions from seed's latent
  /api/classify (POST)   JSON body {"pixels": 784 numbers in [0, 1]}: the reference classifier's
                         probabilities (ten digits and "not a digit"); with model=VAE also its reconstruction
"""

from __future__ import annotations

import base64
import copy
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

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
from .sampling import great_circle, load_trained_model, set_sampling

MOST_SAMPLES = 100  # per request: a grid of 100 is the page's largest, and keeps each answer under a second or two
MOST_POINTS = 16
MOST_STEPS = 64  # flow steps per request (the CLI allows more; a server shares its CPU)
MOST_BODY = 64 * 1024
DIRECTIONS = 3  # sliders along the first principal directions of the latent
PLANE_EXTENT = 3.0  # a 2-D VAE's plane is shown from -3 to 3 in both coordinates

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
    **{f"c{k + 1}": Rule(float, low=-4, high=4) for k in range(DIRECTIONS)},
}
SAMPLING = ("temperature", "steps", "guidance")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ServedModel:
    name: str
    model: VAE | Any
    cfg: Config
    source: str
    directions: tuple[torch.Tensor, torch.Tensor] | None = None  # (unit vectors (k, dim), spreads (k,))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {"name": self.name, "preset": self.cfg.preset, "family": self.cfg.family, "source": self.source,
                "conditional": bool(m.num_classes), "latent_dim": m.latent_dim,
                "latent_plane": isinstance(m, VAE) and m.latent_dim == 2 and not m.num_classes,
                "reconstructs": isinstance(m, VAE),
                "sampling": {"temperature": m.temperature,
                             **({"steps": m.steps, "guidance": m.guidance} if isinstance(m, FlowModel) else {})}}


def load_models(runs: list[str | Path], pretrained: bool = False) -> dict[str, ServedModel]:
    """The run folders (or checkpoints) to serve, each by its run folder's name, made unique, and with
    ``pretrained`` the shipped weights as ``pretrained-NAME``."""
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


def data_url(images: torch.Tensor) -> list[str]:
    return ["data:image/png;base64," + base64.b64encode(grid_png(img[None], ncols=1, scale=4)).decode()
            for img in images]


class Explorer:
    """What the endpoints do, apart from HTTP: sampling, paths, latents, classification."""

    def __init__(self, served: dict[str, ServedModel], data: str | None = None):
        self.served = served
        self.data = data
        self.classifier, _ = load_classifier()
        self._test_images: tuple[torch.Tensor, torch.Tensor] | None = None
        self._data_lock = threading.Lock()

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
            raise BadRequest(str(exc).replace("--", "")) from None
        return model

    def verdicts(self, images: torch.Tensor) -> list[dict[str, Any]]:
        probs = classify(self.classifier, images.float()).probs.float()
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
            raise BadRequest(f"digit: model {entry.name} is not class-conditional; leave digit out")
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
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(1, model.latent_dim, generator=gen) * model.temperature
        labels = self.labels(entry, digit, 1)
        if model.num_classes and labels is None:
            labels = torch.randint(model.num_classes, (1,), generator=gen)
        return z[0], labels

    @torch.no_grad()
    def interpolate(self, entry: ServedModel, q: dict[str, Any]) -> torch.Tensor:
        model = self.variant(entry, q)
        points = q.get("points", 8)
        za, ya = self.latent_of_seed(entry, model, q.get("a", 0), q.get("digit"))
        zb, yb = self.latent_of_seed(entry, model, q.get("b", 1), q.get("digit"))
        if isinstance(model, FlowModel):
            path = great_circle(za, zb, points)
        else:
            path = torch.lerp(za, zb, torch.linspace(0, 1, points)[:, None])
        labels = None
        if model.num_classes:  # two different digits blend along the way
            one_hot = torch.eye(model.num_classes)
            labels = torch.lerp(one_hot[ya[0]], one_hot[yb[0]], torch.linspace(0, 1, points)[:, None])
        return model.decode_latents(path, labels).cpu()

    def test_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        with self._data_lock:
            if self._test_images is None:
                mnist = load_dataset(self.data)
                self._test_images = (to_float_images(mnist.x_test[:2000]), torch.as_tensor(mnist.y_test[:2000]))
            return self._test_images

    @torch.no_grad()
    def principal_directions(self, entry: ServedModel) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit directions (k, latent_dim) and spreads (k,). A VAE's: principal components of the
        encoded test digits. A GAN's or flow's latent is isotropic noise, so its directions are found
        from what they do to the images (as GANSpace does): principal components of 1,000 generated
        digits, each mapped back to the latent direction that predicts it best (least squares)."""
        with entry.lock:
            if entry.directions is None:
                model = entry.model
                gen = torch.Generator().manual_seed(0)
                if isinstance(model, VAE):
                    images, labels = self.test_images()
                    z, _ = model.encode(images, labels if model.num_classes else None)
                    _, s, v = torch.linalg.svd(z - z.mean(0), full_matrices=False)
                    directions, spreads = v[:DIRECTIONS], s[:DIRECTIONS] / (len(z) - 1) ** 0.5
                else:
                    z = torch.randn(1000, model.latent_dim, generator=gen)
                    labels = torch.randint(model.num_classes, (1000,), generator=gen) if model.num_classes else None
                    images = torch.cat([model.decode_latents(zc, None if labels is None else yc).flatten(1)
                                        for zc, yc in zip(z.split(250), (labels if labels is not None else z).split(250))])
                    centred = images - images.mean(0)
                    _, _, pcs = torch.linalg.svd(centred, full_matrices=False)
                    scores = centred @ pcs[:DIRECTIONS].T  # (1000, k)
                    directions = torch.linalg.lstsq(z, scores).solution.T  # (k, latent_dim)
                    directions = directions / directions.norm(dim=1, keepdim=True)
                    spreads = torch.ones(DIRECTIONS)
                entry.directions = (directions, spreads)
            return entry.directions

    @torch.no_grad()
    def latent(self, entry: ServedModel, q: dict[str, Any]) -> torch.Tensor:
        model = self.variant(entry, q)
        if entry.describe()["latent_plane"]:
            missing = [k for k in ("x", "y") if k not in q]
            if missing:
                raise BadRequest(f"{' and '.join(missing)} missing: a point of the 2-D latent plane")
            return model.decode_latents(torch.tensor([[q["x"], q["y"]]], dtype=torch.float32)).cpu()
        if "x" in q or "y" in q:
            raise BadRequest(f"x, y: model {entry.name} has no 2-D latent plane; use c1..c{DIRECTIONS}")
        z, labels = self.latent_of_seed(entry, model, q.get("seed", 0), q.get("digit"))
        directions, spreads = self.principal_directions(entry)
        steps = torch.tensor([q.get(f"c{k + 1}", 0.0) for k in range(DIRECTIONS)])
        z = z + (steps * spreads) @ directions
        return model.decode_latents(z[None], labels).cpu()

    @torch.no_grad()
    def read_drawing(self, entry: ServedModel | None, body: Any) -> dict[str, Any]:
        pixels = body.get("pixels") if isinstance(body, dict) else None
        if not isinstance(pixels, list) or len(pixels) != 28 * 28:
            raise BadRequest("the body must be JSON {\"pixels\": [784 numbers in [0, 1]]} (28 x 28, row by row)")
        try:
            image = torch.tensor([float(p) for p in pixels], dtype=torch.float32)
        except (TypeError, ValueError):
            raise BadRequest("pixels must all be numbers in [0, 1]") from None
        if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise BadRequest("pixels must all be numbers in [0, 1]")
        image = image.reshape(1, 1, 28, 28)
        probs = classify(self.classifier, image).probs.float()[0]
        answer = {"probabilities": {("not a digit" if i == NOT_A_DIGIT else str(i)): round(float(p), 4)
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
            raise BadRequest(f"{name} must be {rule.describe()}, not {text[:40]!r}") from None
    return q


def create_app(explorer: Explorer) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MOST_BODY
    page = (resources.files("mnistgen") / "web" / "index.html").read_bytes()

    def endpoint(allowed: tuple[str, ...], needs_model: bool = True) -> Callable:
        """A route's body gets (model entry or None, checked query)."""

        def wrap(fn: Callable) -> Callable:
            def view() -> Any:
                q = parse_query(request.args.to_dict(flat=True), allowed)
                name = request.args.get("model")
                entry = explorer.model(name) if needs_model or name is not None else None
                return fn(entry, q)

            view.__name__ = fn.__name__
            return view

        return wrap

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{exc.code} {exc.name}: {exc.description}"), exc.code or 500

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("request failed")
        return jsonify(error=f"internal error ({exc.__class__.__name__}); the server keeps running"), 500

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

    @app.post("/api/classify")
    @endpoint((), needs_model=False)
    def classify_drawing(entry: ServedModel | None, q: dict) -> Response:
        return jsonify(explorer.read_drawing(entry, request.get_json(silent=True)))

    return app


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000, data: str | None = None,
          threads: int = 4, pretrained: bool = False) -> None:
    """Load the models, then answer requests until Ctrl-C."""
    from waitress import create_server

    if not runs and not pretrained:
        raise MnistgenError("name at least one run folder or checkpoint to serve (e.g. runs/gan-TIMESTAMP), "
                            "or pass --pretrained")
    served = load_models(runs, pretrained)
    app = create_app(Explorer(served, data))
    try:
        server = create_server(app, host=host, port=port, threads=threads)
    except OSError as exc:
        raise MnistgenError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    print(f"serving {', '.join(served)} on http://{host}:{server.effective_port}/  (Ctrl-C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
