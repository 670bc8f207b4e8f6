"""`mnistgen serve`: every endpoint over HTTP, bad input, faults and concurrent clients. The page itself,
in a real browser: test_page_browser.py."""

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from mnistgen.cli import main
from mnistgen.errors import MnistgenError
from mnistgen.serve import MOST_SAMPLES, PLANE_CELLS, Explorer, create_app, load_models, serve
from serve_support import running, tiny, tiny_flow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("serve")
    return [tiny("mlp-vae-2d-seed002", root / "plane"), tiny("vae", root / "vae"), tiny("gan", root / "gan"),
            tiny_flow(root / "flow")]


@pytest.fixture(scope="module")
def app(runs):
    return create_app(Explorer(load_models(runs)))


@pytest.fixture
def client(app):
    return app.test_client()


def png_shape(data: bytes) -> tuple:
    return mpimg.imread(io.BytesIO(data), format="png").shape


def from_data_url(url: str) -> tuple:
    assert url.startswith("data:image/png;base64,")
    return png_shape(base64.b64decode(url.split(",", 1)[1]))


def test_models_lists_each_run_with_what_it_can_do(client):
    models = {m["name"]: m for m in client.get("/api/models").get_json()}
    assert set(models) == {"plane", "vae", "gan", "flow"}
    assert models["plane"]["latent_plane"] and not models["plane"]["conditional"]
    assert models["vae"]["reconstructs"] and models["vae"]["conditional"] and not models["vae"]["latent_plane"]
    assert models["flow"]["sampling"] == {"temperature": 1.0, "steps": 5, "guidance": 0.15}
    assert "steps" not in models["gan"]["sampling"]


def test_sample_is_a_png_grid_and_the_same_seed_gives_the_same_digits(client):
    first = client.get("/api/sample?model=gan&digit=7&n=12&seed=3")
    assert first.status_code == 200 and first.mimetype == "image/png"
    assert first.data == client.get("/api/sample?model=gan&digit=7&n=12&seed=3").data
    assert first.data != client.get("/api/sample?model=gan&digit=7&n=12&seed=4").data
    height, width = png_shape(first.data)[:2]
    assert width > height  # 10 columns, 2 rows


def test_samples_json_gives_one_image_and_verdict_per_digit(client):
    body = client.get("/api/samples?model=flow&digit=2&n=5&seed=1&steps=2&guidance=1.5").get_json()
    assert len(body["images"]) == len(body["verdicts"]) == 5
    assert all(from_data_url(url)[:2] == (112, 112) for url in body["images"])
    assert all(set(v) == {"label", "p", "acceptable"} and 0 <= v["p"] <= 1 for v in body["verdicts"])


def test_interpolation_ends_at_the_two_samples(client):
    body = client.get("/api/interpolate?model=vae&a=3&b=9&points=5").get_json()
    assert len(body["images"]) == 5
    ends = client.get("/api/samples?model=vae&n=1&seed=3").get_json()["images"][0]
    assert body["images"][0] == ends


def test_latent_plane_and_principal_directions(client):
    centre = client.get("/api/latent?model=plane&x=0&y=0").get_json()
    moved = client.get("/api/latent?model=plane&x=2.5&y=-1").get_json()
    assert centre["image"] != moved["image"] and "verdict" in centre
    for model in ("vae", "gan", "flow"):
        still = client.get(f"/api/latent?model={model}&seed=2").get_json()["image"]
        assert client.get(f"/api/latent?model={model}&seed=2&c1=0").get_json()["image"] == still
        assert client.get(f"/api/latent?model={model}&seed=2&c1=3&c2=-2").get_json()["image"] != still, model


def test_a_drawing_is_classified_and_a_vae_reconstructs_it(client):
    stroke = [0.0] * 784
    for row in range(6, 22):
        stroke[row * 28 + 14] = 1.0  # a vertical bar: something like a 1
    body = client.post("/api/classify?model=vae", json={"pixels": stroke}).get_json()
    probabilities = body["probabilities"]
    assert set(probabilities) == {*map(str, range(10)), "not a digit"}
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    assert from_data_url(body["reconstruction"])[:2] == (112, 112)
    plain = client.post("/api/classify", json={"pixels": stroke}).get_json()
    assert "reconstruction" not in plain and plain["probabilities"] == probabilities


@pytest.mark.parametrize("url, status, message", [
    ("/api/sample?model=gan&n=0", 400, "n must be a whole number in [1, 100], not '0'"),
    (f"/api/sample?model=gan&n={MOST_SAMPLES + 1}", 400, "n must be a whole number in [1, 100]"),
    ("/api/sample?model=gan&digit=10", 400, "digit must be a whole number in [0, 9], not '10'"),
    ("/api/sample?model=gan&digit=seven", 400, "digit must be a whole number in [0, 9], not 'seven'"),
    ("/api/sample?model=gan&seed=-1", 400, "seed must be a whole number in [0, 4.29497e+09]"),
    ("/api/sample?model=gan&temperature=nan", 400, "temperature must be a finite number in (0, 5]"),
    ("/api/sample?model=gan&temperature=inf", 400, "temperature must be a finite number in (0, 5]"),
    ("/api/sample?model=gan&steps=4", 400, "steps applies to flow models (e.g. the flow preset); preset gan is a gan"),
    ("/api/sample?model=flow&steps=65", 400, "steps must be a whole number in [1, 64]"),
    ("/api/sample?model=plane&digit=3", 400, "digit: model plane is not class-conditional"),
    ("/api/sample?model=gan&colour=red", 400, "unknown parameter 'colour'"),
    ("/api/sample", 400, "model is missing; one of: plane, vae, gan, flow"),
    ("/api/sample?model=nope", 404, "unknown model 'nope'; served: plane, vae, gan, flow"),
    ("/api/sample?model=../../etc/passwd", 404, "unknown model '../../etc/passwd'"),
    ("/api/sample?model=%2Fetc%2Fpasswd", 404, "unknown model '/etc/passwd'"),
    ("/../../etc/passwd", 404, "404 Not Found"),
    ("/api/latent?model=plane", 400, "x and y missing"),
    ("/api/latent?model=plane&x=9&y=0", 400, "x must be a finite number in [-3, 3]"),
    ("/api/latent?model=gan&x=1&y=1", 400, "model gan has no 2-D latent plane"),
    ("/api/interpolate?model=gan&points=1", 400, "points must be a whole number in [2, 16]"),
    ("/api/models?model=gan&n=3", 400, "unknown parameter 'n'"),
])
def test_bad_requests_get_a_4xx_and_one_line(client, url, status, message):
    answer = client.get(url)
    assert answer.status_code == status, answer.data
    error = answer.get_json()["error"]
    assert message in error and "\n" not in error


@pytest.mark.parametrize("body, message", [
    ({"pixels": [0.5] * 783}, "784 numbers"),
    ({"pixels": [2.0] * 784}, "numbers in [0, 1]"),
    ({"pixels": ["x"] * 784}, "numbers in [0, 1]"),
    ({"pixels": [None] * 784}, "numbers in [0, 1]"),
    ([1, 2, 3], "784 numbers"),
])
def test_bad_drawings_are_refused(client, body, message):
    answer = client.post("/api/classify", json=body)
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_wrong_method_bad_json_and_huge_bodies(client):
    assert client.get("/api/classify").status_code == 405
    assert client.post("/api/sample?model=gan").status_code == 405
    answer = client.post("/api/classify", data="{not json", content_type="application/json")
    assert answer.status_code == 400
    huge = client.post("/api/classify", data=b"0" * (200 * 1024), content_type="application/json")
    assert huge.status_code == 413 and "error" in huge.get_json()
    assert client.post("/api/classify?model=gan", json={"pixels": [0] * 784}).status_code == 400


def test_a_failing_model_is_a_500_and_the_server_keeps_answering(app, client, monkeypatch):
    from mnistgen import serve

    monkeypatch.setattr(serve.Explorer, "sample", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    answer = client.get("/api/samples?model=gan")
    assert answer.status_code == 500 and "internal error (RuntimeError)" in answer.get_json()["error"]
    monkeypatch.undo()
    assert client.get("/api/samples?model=gan&n=2").status_code == 200


@pytest.fixture(scope="module")
def server(app):
    with running(app) as address:
        yield address


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_concurrent_clients_with_bad_requests_among_them(server):
    urls = [f"{server}/api/sample?model=gan&n=8&seed={i}" for i in range(12)]
    urls += [f"{server}/api/sample?model=gan&n=abc", f"{server}/api/sample?model=../x",
             f"{server}/api/samples?model=flow&n=4&steps=2", f"{server}/api/latent?model=plane&x=1&y=1"] * 3
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(fetch, urls))
    statuses = [status for status, _ in answers]
    assert statuses[:12] == [200] * 12
    assert statuses[12:] == [400, 404, 200, 200] * 3
    # Parallel requests with other sampling options never leak into each other: same seed, same grid.
    assert answers[0][1] == fetch(urls[0])[1]


def test_serve_command_line_errors(tmp_path, capsys, runs):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "name at least one run folder or checkpoint to serve" in capsys.readouterr().err
    assert main(["serve", str(runs[2]), "--port", "70000"]) == 2
    assert "--port: must be a whole number in [0, 65535], not '70000'" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(runs, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(runs[2]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


# ------------------------------------------------------------------------ what the page relies on


@pytest.mark.parametrize("url, parameter", [
    ("/api/sample?model=gan&n=0", "n"),
    ("/api/interpolate?model=gan&a=-3", "a"),
    ("/api/sample?model=gan&steps=4", "steps"),
    ("/api/sample?model=plane&digit=3", "digit"),
    ("/api/latent?model=vae&c2=9", "c2"),
    ("/api/plane?model=plane&cells=1", "cells"),
])
def test_a_bad_parameter_is_named_for_the_page_to_mark_its_field(client, url, parameter):
    answer = client.get(url)
    assert answer.status_code == 400 and answer.get_json()["parameter"] == parameter
    assert "parameter" not in client.get("/api/sample?model=nope").get_json()  # no field is at fault


def test_models_say_whether_their_latent_directions_are_ready(client):
    for name in ("vae", "gan", "flow"):
        client.get(f"/api/latent?model={name}")  # waits for the background thread where it is still busy
    models = {m["name"]: m for m in client.get("/api/models").get_json()}
    assert models["plane"]["directions"] is None  # its page shows the plane instead
    assert {models[name]["directions"] for name in ("vae", "gan", "flow")} == {"ready"}


def test_directions_are_found_in_the_background_while_requests_are_answered(runs):
    gate = threading.Event()

    class Gated(Explorer):
        def find_directions(self, model):
            assert gate.wait(60)
            return super().find_directions(model)

    client = create_app(Gated(load_models([runs[2]]))).test_client()
    assert client.get("/api/models").get_json()[0]["directions"] == "computing"
    assert client.get("/api/samples?model=gan&n=2").status_code == 200  # not held up
    gate.set()
    assert client.get("/api/latent?model=gan&c1=1").status_code == 200
    assert client.get("/api/models").get_json()[0]["directions"] == "ready"


def test_stopping_ends_the_background_thread_between_two_batches(runs):
    explorer = Explorer(load_models([runs[2]]))
    explorer.direction_samples = 50_000  # 200 batches: far more than it finishes before the stop
    thread = explorer.start_finding_directions()
    explorer.stop_finding_directions(timeout=30)
    assert not thread.is_alive()  # a thread left inside torch when Python exits aborts the process


def test_directions_that_cannot_be_found_are_said_and_the_rest_works(runs, tmp_path):
    client = create_app(Explorer(load_models(runs[1:3]), data=str(tmp_path / "missing.npz"))).test_client()
    answer = client.get("/api/latent?model=vae&c1=1")  # a VAE's directions come from the data: missing here
    assert answer.status_code == 503
    assert "latent directions of vae could not be found" in answer.get_json()["error"]
    assert "missing.npz does not exist" in answer.get_json()["error"]
    vae = client.get("/api/models").get_json()[0]
    assert vae["directions"] == "failed" and "missing.npz" in vae["directions_error"]
    assert client.get("/api/latent?model=gan&c1=1").status_code == 200
    assert client.get("/api/samples?model=vae&n=2").status_code == 200


def keras_style_arrays() -> dict[str, np.ndarray]:
    """A tiny MNIST-like set stored as Keras' mnist.npz stores it: uint8 pixels and uint8 labels."""
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), "y_train": np.arange(60, dtype=np.uint8) % 10,
            "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), "y_test": np.arange(10, dtype=np.uint8) % 10}


def latent_slider_status(explorer: Explorer) -> int:
    answer = create_app(explorer).test_client().get("/api/latent?model=vae&seed=1&c1=2")
    assert explorer.test_images()[1].dtype == torch.int64
    return answer.status_code


def test_uint8_labels_of_a_keras_style_npz_reach_the_latent_sliders(runs, tmp_path, monkeypatch):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, **keras_style_arrays())
    assert latent_slider_status(Explorer(load_models([runs[1]]), data=str(npz))) == 200
    # Even from a loader that hands labels over as they are stored, the conditional VAE gets int64 ones.
    from mnistgen import serve as serve_module

    monkeypatch.setattr(serve_module, "load_dataset", lambda data: SimpleNamespace(**keras_style_arrays()))
    assert latent_slider_status(Explorer(load_models([runs[1]]))) == 200


def test_the_plane_map_tiles_the_plane_with_the_digits_decoded_there(client):
    body = client.get("/api/plane?model=plane").get_json()
    assert body["cells"] == PLANE_CELLS and body["extent"] == 3
    picture = mpimg.imread(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1])), format="png")[..., 0]
    assert picture.shape == (PLANE_CELLS * 28, PLANE_CELLS * 28)
    # The top left square is the digit at the centre of the plane's top left square (x, y = -2.8, 2.8).
    corner = 3 - 3 / PLANE_CELLS
    point = client.get(f"/api/latent?model=plane&x={-corner}&y={corner}").get_json()["image"]
    digit = mpimg.imread(io.BytesIO(base64.b64decode(point.split(",", 1)[1])), format="png")[::4, ::4, 0]
    assert np.abs(picture[:28, :28] - digit).max() <= 2 / 255
    assert np.abs(picture[-28:, -28:] - digit).max() > 0.05  # the opposite corner is another digit
    small = client.get("/api/plane?model=plane&cells=4").get_json()
    assert from_data_url(small["image"])[:2] == (112, 112)
    answer = client.get("/api/plane?model=vae")
    assert answer.status_code == 400 and "model vae has no 2-D latent plane" in answer.get_json()["error"]


def nested(depth: int) -> str:
    return '{"pixels": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("body, message", [
    (nested(30_000), "not valid JSON"),  # under the size limit, too deep for the parser: a RecursionError before
    ("[" * 30_000, "not valid JSON"),
    (json.dumps({"pixels": [True] * 784}), "not true/false"),
    (json.dumps({"pixels": [False] * 783 + [0.5]}), "not true/false"),
    (json.dumps({"pixels": [[0.5]] * 784}), "numbers in [0, 1]"),
    (json.dumps({"pixels": [0] * 783 + [10**400]}), "numbers in [0, 1]"),
    ('{"pixels": [' + ", ".join(["NaN"] * 784) + "]}", "numbers in [0, 1]"),
    ('{"pixels": [' + ", ".join(["1e999"] * 784) + "]}", "numbers in [0, 1]"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"pixels": 5}', "784 numbers"),
    ("null", "784 numbers"),
])
def test_malformed_drawings_are_a_400_not_a_500(client, body, message):
    answer = client.post("/api/classify?model=vae", data=body, content_type="application/json")
    assert answer.status_code == 400, answer.data[:200]
    assert message in answer.get_json()["error"]


def test_serve_refuses_a_host_that_is_no_address(runs, capsys):
    assert main(["serve", str(runs[2]), "--host", "999.1.1.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistgen: error: --host 999.1.1.1: not an IP address") and err.count("\n") == 1
    assert "127.0.0.1" in err  # what is allowed
    with pytest.raises(MnistgenError, match="--host 192.0.2.1: cannot listen there"):
        serve([str(runs[2])], host="192.0.2.1", port=0)  # a well-formed address that is not this machine's
    with pytest.raises(MnistgenError, match="--host '': not an IP address"):
        serve([str(runs[2])], host="")


def test_serve_places_models_on_the_device_asked_for(runs):
    with pytest.raises(MnistgenError, match="--device must be auto, cpu or cuda, not 'tpu'"):
        serve([str(runs[2])], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MnistgenError, match="--device cuda asked for, but no CUDA device is available"):
            serve([str(runs[2])], device="cuda")
    explorer = Explorer(load_models(runs[1:3]), device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert explorer.device.type == expected
    assert {next(e.model.parameters()).device.type for e in explorer.served.values()} == {expected}
    assert next(explorer.classifier.parameters()).device.type == expected
    client = create_app(explorer).test_client()
    assert client.get("/api/latent?model=vae&c1=1").status_code == 200
    assert client.get("/api/interpolate?model=vae&points=3").status_code == 200
