"""The README's screenshot of `mnistgen serve`: the pretrained models served on a free port, the page
driven in headless Chromium (pick the gan, digit 7; draw a stroke on the pad), saved as a PNG.

Run:   .venv/bin/python benchmarks/serve_screenshot.py [--out docs/serve.png] [RUN ...]
Needs Debian's chromium and chromium-driver, and shipped pretrained weights.
"""

from __future__ import annotations

import argparse
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from waitress import create_server

from mnistgen.serve import Explorer, create_app, load_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--model", default="pretrained-gan")
    parser.add_argument("--out", default="docs/serve.png")
    args = parser.parse_args()
    server = create_server(create_app(Explorer(load_models(args.runs, pretrained=True))), host="127.0.0.1", port=0)
    threading.Thread(target=server.run, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1100,1500"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(browser, 120)
    try:
        browser.get(f"http://127.0.0.1:{server.effective_port}/")
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#samples img').length") > 0)
        Select(browser.find_element(By.ID, "model")).select_by_value(args.model)
        Select(browser.find_element(By.ID, "digit")).select_by_value("7")
        time.sleep(3)
        browser.find_element(By.ID, "interpolate").click()
        # A 7 drawn by script (the browser test draws with the mouse): top bar, then the diagonal.
        browser.execute_script("""
            const ink = document.getElementById('pad').getContext('2d');
            ink.strokeStyle = '#fff'; ink.lineWidth = 22; ink.lineCap = 'round';
            ink.beginPath(); ink.moveTo(70, 60); ink.lineTo(200, 60); ink.lineTo(120, 230); ink.stroke();
            padHasInk = true; readDrawing();""")
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#probabilities .probability').length") == 11)
        wait.until(lambda d: d.execute_script("return !document.getElementById('latent-image').hidden"))  # directions found
        time.sleep(2)
        browser.save_screenshot(args.out)
        print(f"wrote {args.out}")
    finally:
        browser.quit()
        server.close()


if __name__ == "__main__":
    main()
