"""The built documentation site, opened in a real browser (``make docs-check``).

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``make docs-check`` installs
them when missing) driven by Selenium loads three pages of ``site/`` (built by ``make docs``)
from a local HTTP server: the home page, the ``Normed`` entry of the API reference and the
results page. Each page's title is checked, the results page's figure must have loaded (a
decoded image, not a broken one), and a screenshot of each goes to ``results/docs-site/``.

Marked ``browser``: not part of ``make test`` (setup.cfg deselects it); ``make docs-check``
runs it.
"""

import functools
import http.server
import os
import shutil
import threading

import pytest

pytestmark = pytest.mark.browser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.join(ROOT, "site")
SHOTS = os.path.join(ROOT, "results", "docs-site")

# (screenshot name, path in the site, an element that must be there, expected <title>). The
# screenshot shows the top of the page, the API entry its URL scrolls to, or the figure.
PAGES = [
    ("home", "", "h1#keras-normed", "keras-normed"),
    ("normed-api", "api/initializers/#keras_normed.initializers.Normed",
     "[id='keras_normed.initializers.Normed']", "keras_normed.initializers - keras-normed"),
    ("results", "results/", "img[src$='figures/compare-bcd.png']", "Results - keras-normed"),
]


@pytest.fixture(scope="module")
def site_url():
    if not os.path.isfile(os.path.join(SITE, "index.html")):
        pytest.fail("no site/index.html: build the site first (make docs)")
    handler = functools.partial(_QuietHandler, directory=SITE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromedriver are needed: `make docs-check` installs Debian's "
                    "chromium and chromium-driver packages")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.mark.parametrize("name, path, selector, title", PAGES, ids=[p[0] for p in PAGES])
def test_page_loads_with_its_title_and_images(browser, site_url, name, path, selector, title):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site_url + path)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    assert browser.title == title
    target = browser.find_element(By.CSS_SELECTOR, selector)
    # No transitions: the header's title swap on scrolling would be caught half-way.
    browser.execute_script(
        "const s = document.createElement('style');"
        "s.textContent = '*, *::before, *::after { transition: none !important; "
        "animation: none !important; }'; document.head.appendChild(s);")
    if target.tag_name == "img":
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
    # Every image of the page decoded (a missing or broken file has naturalWidth 0).
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return Array.from(document.images).every(i => i.complete);"))
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src);")
    assert not broken, f"images that did not load on {path or 'the home page'}: {broken}"
    if target.tag_name == "img":
        assert browser.execute_script("return arguments[0].naturalWidth;", target) > 0
        assert target.is_displayed()
    os.makedirs(SHOTS, exist_ok=True)
    assert browser.save_screenshot(os.path.join(SHOTS, f"{name}.png"))
