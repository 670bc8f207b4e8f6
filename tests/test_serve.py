"""`mnistgen serve`: every endpoint over HTTP, bad input, faults and concurrent clients, and the page
driven in a real browser (Debian's chromium + chromedriver; skipped with the reason where absent)."""

import base64
import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from mnistgen.cli import main
from mnistgen.serve import MOST_SAMPLES, Explorer, create_app, load_models


def tiny(preset, out, *extra):
    assert main(["train", preset, "--subset", "128", "--epochs", "1", "--set", "batch_size=32", "--out", str(out),
                 "--no-progress", "--device", "cpu", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("serve")
    return [tiny("mlp-vae-2d-seed002", root / "plane"), tiny("vae", root / "vae"), tiny("gan", root / "gan"),
            tiny("flow", root / "flow", "--set", "model_args.width=8",
                 "--set", "model_args.target=velocity")]  # a barely trained data target draws one grey image


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
    assert models["flow"]["sampling"] == {"temperature": 1.0, "steps": 5, "guidance": 0.2}
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
    """The app on a real waitress server, on a free port of 127.0.0.1."""
    from waitress import create_server

    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}"
    srv.close()


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


# ---------------------------------------------------------------------------------------------- browser
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install -y chromium "
                    "chromium-driver; .ci/run does this where it may)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, and nothing that would call out to the internet (this machine has none).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(browser, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda d: condition(d))


def test_page_in_a_real_browser(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def js(expression):  # read the page's state in one go (elements are replaced as answers arrive)
        return browser.execute_script(f"return {expression};")

    first_sample = "(document.querySelector('#samples img') || {}).src || ''"
    browser.get(server + "/")
    wait_for(browser, lambda d: js(first_sample).startswith("data:image/png"))

    # Pick the conditional VAE and digit 7: the grid is redrawn with 7s asked for.
    Select(browser.find_element(By.ID, "model")).select_by_value("vae")
    wait_for(browser, lambda d: js("!document.getElementById('digit').disabled"))
    wait_for(browser, lambda d: js("document.querySelectorAll('#samples img').length") == 20)
    before = js(first_sample)
    Select(browser.find_element(By.ID, "digit")).select_by_value("7")
    wait_for(browser, lambda d: js(first_sample) not in ("", before))
    assert js("[...document.querySelectorAll('#samples img')].every(i => i.src.startsWith('data:image/png'))")
    assert js("document.querySelectorAll('#samples figcaption').length") == 20

    # Draw a stroke on the pad: the classifier's eleven probabilities appear, and the VAE's reconstruction.
    pad = browser.find_element(By.ID, "pad")
    ActionChains(browser).move_to_element_with_offset(pad, 0, -90).click_and_hold() \
        .move_by_offset(0, 60).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    wait_for(browser, lambda d: js("document.querySelectorAll('#probabilities .probability').length") == 11)
    assert "not a digit" in js("document.getElementById('probabilities').textContent")
    wait_for(browser, lambda d: (js("document.getElementById('reconstruction').src") or "").startswith("data:"))

    # The 2-D VAE: dragging over the latent plane redraws the decoded digit.
    latent = "document.getElementById('latent-image').src || ''"
    Select(browser.find_element(By.ID, "model")).select_by_value("plane")
    wait_for(browser, lambda d: js("document.getElementById('plane').offsetWidth") > 0)  # shown
    wait_for(browser, lambda d: js(latent).startswith("data:"))
    start = js(latent)
    plane = browser.find_element(By.ID, "plane")
    ActionChains(browser).move_to_element_with_offset(plane, -120, -120).click_and_hold() \
        .move_by_offset(60, 60).move_by_offset(60, 60).release().perform()
    wait_for(browser, lambda d: js(latent) != start)
    assert js("document.getElementById('status').textContent") == ""  # no error shown on the page
    shot = os.environ.get("MNISTGEN_SCREENSHOT")
    if shot:  # how the README's screenshot is made: MNISTGEN_SCREENSHOT=docs/serve.png pytest -k browser
        browser.save_screenshot(shot)
    assert browser.save_screenshot(str(tmp_path / "page.png"))
