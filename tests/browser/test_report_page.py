"""The benchmark report page in a real headless browser, with the network cut off: every plot shows."""
import pytest

from tests.browser.test_kiosk_page import CHROMEDRIVER, CHROMIUM
from tests.unit.test_reports import _results

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver "
                                                             "(.ci/run installs them)")
def test_the_report_page_shows_every_plot_offline(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from benchmarks.cli import main

    root = tmp_path / "results"
    _results(root, "host")
    assert main(["report", str(root)]) == 0
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):   # no network at all
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get((root / "host" / "report.html").as_uri())
        images = browser.find_elements(By.TAG_NAME, "img")
        assert len(images) == 2
        for image in images:
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
        assert "Benchmarks: host" in browser.title
    finally:
        browser.quit()
