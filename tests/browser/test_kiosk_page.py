"""The kiosk page in a real headless browser (Debian's chromium, driven by Selenium): it loads, shows the live
frame and the camera state, and an enrolment through the page adds the person to the gallery."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


@contextlib.contextmanager
def serving(bundle, *flags):
    home, port = Path(os.environ["EDGE_FACE_HOME"]), free_port()     # this test's own, which trusts the bundle
    env = dict(os.environ)
    if not (home / "gallery.db").exists():
        subprocess.run([sys.executable, "-m", "edge", "gallery", "--create"], cwd=ROOT, env=env, check=True)
    server = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--bundle", str(bundle), "--port",
                               str(port), "--source", "synthetic://kiosk?seeds=700,701&frames_per_person=2000",
                               *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/health", timeout=2).status == 200)
        tokens = json.loads((home / "tokens.json").read_text())
        yield base, tokens
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.fixture
def kiosk(verify_bundle):
    with serving(verify_bundle) as served:
        yield served


def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver "
                                                             "(.ci/run installs them)")
def test_the_page_shows_the_camera_and_enrols_a_person(kiosk, tmp_path):
    from selenium.webdriver.common.by import By

    from synthetic_faces.dataset import write_identity_folders

    base, tokens = kiosk
    write_identity_folders(tmp_path / "photos", 1, 2, seed=900)
    photo = sorted((tmp_path / "photos").rglob("*.png"))[0]
    browser = headless_chromium()
    try:
        browser.get(f"{base}/?token={tokens['admin']}")
        frame = browser.find_element(By.ID, "frame")
        wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", frame) > 0)
        wait_for(lambda: browser.find_element(By.ID, "camera").text == "streaming")
        assert browser.find_element(By.ID, "enrolled").text == "0"
        form = browser.find_element(By.ID, "enrol")
        form.find_element(By.NAME, "name").send_keys("page person")
        form.find_element(By.NAME, "photos").send_keys(str(photo))
        form.find_element(By.NAME, "consent").click()
        form.find_element(By.TAG_NAME, "button").click()
        wait_for(lambda: browser.find_element(By.ID, "enrolled_result").text.startswith("enrolled 1 photo"))
        wait_for(lambda: "page person" in browser.find_element(By.ID, "people").text)
        wait_for(lambda: browser.find_element(By.ID, "enrolled").text == "1")
    finally:
        browser.quit()
    request = urllib.request.Request(f"{base}/api/gallery", headers={"Authorization": f"Bearer {tokens['read']}"})
    people = json.loads(urllib.request.urlopen(request, timeout=5).read())["people"]
    assert people == [{"name": "page person", "templates": 1}]


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_page_asks_each_visitor_for_the_challenge_and_says_when_liveness_is_off(verify_bundle):
    from selenium.webdriver.common.by import By

    from edge.liveness.challenge import REQUESTS

    with serving(verify_bundle, "--challenge") as (base, tokens):
        browser = headless_chromium()
        try:
            browser.get(f"{base}/?token={tokens['read']}")
            wait_for(lambda: browser.find_element(By.ID, "ask").text in REQUESTS)
            assert browser.find_element(By.ID, "liveness_off").text == ""
        finally:
            browser.quit()
    with serving(verify_bundle, "--no_liveness") as (base, tokens):
        browser = headless_chromium()
        try:
            browser.get(f"{base}/?token={tokens['read']}")
            wait_for(lambda: browser.find_element(By.ID, "liveness_off").text.startswith("liveness off"))
        finally:
            browser.quit()
