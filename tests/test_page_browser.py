"""The page of `mnistgen serve`, driven in headless Chromium (Debian's chromium + chromium-driver; the tests
skip where chromedriver is missing). Tiny models: the point is what the page shows, not the digits."""

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request

import pytest

from mnistgen.models import FlowModel
from mnistgen.serve import PLANE_CELLS, Explorer, create_app, load_models
from serve_support import running, tiny, tiny_flow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Headless, and nothing that would call out to the internet (this machine has none).
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,2000")

pytestmark = pytest.mark.skipif(not CHROMEDRIVER, reason="chromedriver is missing (apt-get install -y chromium "
                                                          "chromium-driver; .ci/run does this where it may)")


class GatedExplorer(Explorer):
    """Finds a flow's latent directions only once the test opens the gate: the page's "computing" state
    lasts as long as the test needs it to."""

    direction_samples = 200  # fewer generated digits than a real server's: tiny models, fast tests
    gate = threading.Event()

    def find_directions(self, model):
        if isinstance(model, FlowModel):
            self.gate.wait(120)
        return super().find_directions(model)


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist):
    root = tmp_path_factory.mktemp("page")
    runs = [tiny("mlp-vae-2d-seed002", root / "plane"), tiny("vae", root / "vae"), tiny_flow(root / "flow")]
    with running(create_app(GatedExplorer(load_models(runs)))) as address:
        yield address
    GatedExplorer.gate.set()  # lets the background thread finish


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    if CHROMIUM:
        options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="mnistgen-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")  # a fresh profile, removed afterwards
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def page(browser, server):
    """The page, freshly loaded, with the first model's samples drawn; ``page.js(expr)`` reads its state."""
    browser.get(server + "/")
    page = Page(browser, server)
    page.wait(lambda: page.js("document.querySelectorAll('#samples img').length") == 20)
    return page


class Page:
    def __init__(self, browser, server):
        self.browser, self.server = browser, server

    def js(self, expression):  # one read of the page's state (elements are replaced as answers arrive)
        return self.browser.execute_script(f"return {expression};")

    def wait(self, condition, timeout=60):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.browser, timeout, poll_frequency=0.05).until(
            lambda d: condition(), message=f"the page still says: {self.state()}")

    def state(self):  # for a failure's message: what the page shows as errors and what it waits for
        return self.js("[...document.querySelectorAll('.error, .busy')].filter(e => e.textContent && "
                       "e.getClientRects().length).map(e => (e.id || e.className) + ': ' + e.textContent)")

    def choose_model(self, name):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        Select(self.browser.find_element(By.ID, "model")).select_by_value(name)

    def set_field(self, element_id, value, event="change"):  # as typing a value and leaving the field does
        self.browser.execute_script(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
            "e.dispatchEvent(new Event(arguments[2]));", element_id, str(value), event)

    def field_error(self, element_id):
        return self.js(f"(document.getElementById('{element_id}').closest('label').querySelector('.error') "
                       "|| {}).textContent || ''")

    def shown(self, element_id):
        return self.js(f"document.getElementById('{element_id}').getClientRects().length > 0")

    def idle(self, panel):
        return not self.shown(f"{panel}-busy")

    def settled(self):  # no panel waits for an answer: the layout stays put for pointer actions
        return self.js("document.querySelectorAll('.busy:not([hidden])').length") == 0

    def broken_images(self):
        """Images on screen that show no picture (a broken-image icon)."""
        return self.js("[...document.images].filter(i => i.getClientRects().length > 0)"
                       ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.id || i.alt)")

    def requests_to(self, path):  # the URLs the page has asked for, in order
        return self.js(f"performance.getEntriesByType('resource').map(e => e.name)"
                       f".filter(n => n.includes('{path}'))")

    def latent_image(self):
        return self.js("document.getElementById('latent-image').getAttribute('src') || ''")


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def test_an_error_stays_beside_its_field_in_the_pages_words_until_that_field_succeeds(page):
    assert page.broken_images() == [] and page.field_error("n") == ""
    page.set_field("n", 0)
    page.wait(lambda: page.field_error("n") != "")
    assert page.field_error("n").startswith("samples must be a whole number in [1, 100]")  # the field's label, not "n"
    assert page.js("document.querySelectorAll('#samples img').length") == 0  # no digits that the fields did not ask for
    page.set_field("seed", 4)  # another field's request: the samples field is still wrong, its error stays
    page.wait(lambda: page.requests_to("seed=4") and page.idle("samples"))
    assert page.field_error("n").startswith("samples must be")
    page.set_field("points", 1)  # the path panel's own field
    page.wait(lambda: page.field_error("points") != "")
    assert page.field_error("points").startswith("points must be a whole number in [2, 16]")
    page.set_field("n", 3)
    page.wait(lambda: page.js("document.querySelectorAll('#samples img').length") == 3)
    assert page.field_error("n") == "" and page.field_error("points") != ""  # each until its own field succeeds
    page.set_field("points", 4)
    page.wait(lambda: page.js("document.querySelectorAll('#path img').length") == 4)
    assert page.js("[...document.querySelectorAll('.error')].map(e => e.textContent).join('')") == ""


def test_a_model_change_clears_and_labels_every_panel_and_the_plane_is_a_map(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page.choose_model("vae")
    page.wait(lambda: page.js("document.querySelectorAll('#path img').length") == 8 and page.latent_image())
    page.wait(page.settled)
    assert page.js("document.getElementById('path-model').textContent") == "model vae"
    # Before anything is drawn on the pad there is no reconstruction: a note in its place, not a broken image.
    assert not page.shown("reconstruction") and "draw a digit" in page.js(
        "document.getElementById('reconstruction-placeholder').textContent")
    assert page.broken_images() == []
    pad = page.browser.find_element(By.ID, "pad")
    ActionChains(page.browser).move_to_element_with_offset(pad, 0, -90).click_and_hold() \
        .move_by_offset(0, 60).move_by_offset(0, 60).move_by_offset(0, 60).release().perform()
    page.wait(lambda: page.js("document.querySelectorAll('#probabilities .probability').length") == 11)
    page.wait(lambda: page.shown("reconstruction"))

    # Answers slowed down: right after the change, the panels are empty, say they are busy, and name the model.
    page.js("(() => { const plain = window.fetch; window.fetch = (...a) => "
            "new Promise(r => setTimeout(r, 800)).then(() => plain(...a)); })()")
    page.choose_model("plane")
    assert page.js("document.querySelectorAll('#samples img, #path img').length") == 0
    assert not page.shown("latent-image") and not page.shown("reconstruction")
    assert all(page.shown(f"{panel}-busy") for panel in ("samples", "path", "latent", "map"))
    assert {page.js(f"document.getElementById('{p}-model').textContent") for p in ("samples", "path", "latent")} \
        == {"model plane"}

    # The 2-D VAE's plane: a map of decoded digits with ticks on both axes; pressing on it decodes that point.
    page.wait(lambda: page.js("document.getElementById('plane-map').naturalWidth") == PLANE_CELLS * 28)
    page.wait(lambda: page.latent_image() and page.settled())
    ticks = page.js("['x-ticks', 'y-ticks'].map(id => document.getElementById(id).textContent).join('|')")
    assert ticks == "-3-2-10123|-3-2-10123"
    assert "z1" in page.js("document.querySelector('.plane-frame').textContent")
    start = page.latent_image()
    plane = page.browser.find_element(By.ID, "plane")
    ActionChains(page.browser).move_to_element_with_offset(plane, -120, -120).click_and_hold() \
        .move_by_offset(60, 60).move_by_offset(60, 60).release().perform()
    page.wait(lambda: page.latent_image() != start)
    page.wait(lambda: page.shown("reconstruction"))  # the drawing, read again with the new model
    assert page.broken_images() == []
    assert page.js("[...document.querySelectorAll('.error')].map(e => e.textContent).join('')") == ""
    shot = os.environ.get("MNISTGEN_SCREENSHOT")
    if shot:  # how the docs' screenshot is made: MNISTGEN_SCREENSHOT=docs/serve.png pytest tests/test_page_browser.py
        page.browser.save_screenshot(shot)
    assert page.browser.save_screenshot(str(tmp_path / "page.png"))


def test_a_flows_latent_panel_says_computing_then_its_sliders_answer_the_latest_move(page):
    page.choose_model("flow")
    page.wait(lambda: "computing" in page.js("document.getElementById('latent-image-placeholder').textContent"))
    assert page.shown("latent-busy") and not page.shown("latent-image") and page.broken_images() == []
    GatedExplorer.gate.set()
    page.wait(lambda: page.latent_image() and page.idle("latent"))
    still = page.latent_image()

    # Sliders show their values, and a burst of moves is one request (debounced).
    before = len(page.requests_to("/api/latent"))
    for value in (0.5, 1, 1.5, 2):
        page.set_field("c1", value, event="input")
    assert page.js("document.getElementById('c1-value').textContent") == "2.00"
    page.wait(lambda: page.latent_image() != still and page.idle("latent"))
    assert len(page.requests_to("/api/latent")) == before + 1

    # An answer that comes back after a later request's is dropped: the later one is what shows.
    page.js("(() => { const plain = window.fetch; let first = true; window.fetch = (url, ...rest) => {"
            " const slow = first && String(url).includes('/api/latent'); if (slow) first = false;"
            " const answer = plain(url, ...rest);"
            " return slow ? answer.then(a => new Promise(r => setTimeout(() => r(a), 3000))) : answer; }; })()")
    page.set_field("c1", -3, event="input")
    page.wait(lambda: any("c1=-3" in url for url in page.requests_to("/api/latent")), timeout=10)
    page.set_field("c1", 3, event="input")
    page.wait(lambda: any("c1=3&" in url for url in page.requests_to("/api/latent")) and page.idle("latent"))
    late, latest = page.requests_to("c1=-3")[-1], page.requests_to("c1=3&")[-1]
    assert page.latent_image() == fetch_json(latest)["image"] != fetch_json(late)["image"]
    time.sleep(3.5)  # the slow answer lands
    assert page.latent_image() == fetch_json(latest)["image"]

    # Reset: every slider back to 0, and the seed's own digit again.
    page.browser.find_element("id", "reset").click()
    page.wait(lambda: page.latent_image() == still)
    assert page.js("['c1', 'c2', 'c3'].map(id => document.getElementById(id + '-value').textContent).join()") \
        == "0.00,0.00,0.00"
