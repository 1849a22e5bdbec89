"""The web page of ``atrous serve`` in a real browser: Debian's chromium, headless, driven by
Selenium through the system chromedriver, against the app served by uvicorn on loopback.

At a phone-sized (390×844) and a desktop-sized (1280×800) viewport: a photo goes in (a
humanseg photo from ``$ATROUS_DATA/humanseg`` when present, else a synthetic one; dropped on
the phone, chosen with the file input on the desktop); the overlay the page draws is read
back pixel by pixel and compared with the photo as the browser decodes it and the label map
the server returns (opacity 0: the photo itself; 50 %: the blend, which differs from the
photo where the mask is; 100 %: the class colours); the legend lists the classes present
with the server's pixel shares; portrait mode shows the server's portrait and a new one
when the blur slider moves (debounced); the downloads are what is shown; nothing scrolls
sideways; nothing is loaded from elsewhere. Also: the server's refusal reason and the API
key flow, a page opened while the model loads, an EXIF-rotated phone photo.
Screenshots go to pytest's tmp_path; ``ATROUS_UPDATE_SCREENSHOT=1`` also writes the
desktop one to docs/serving.png.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers import save_tiny_segmenter

pytest.importorskip("fastapi", reason="atrous serve needs the serve extra (fastapi)")
uvicorn = pytest.importorskip("uvicorn", reason="atrous serve needs the serve extra (uvicorn)")
pytest.importorskip("selenium", reason="the browser test drives chromium with selenium (the dev extra)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from atrous.serve import Limits, create_app  # noqa: E402
from atrous.serve.service import ModelService  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["background", "person", "cat"]
PALETTE = [[0, 0, 0], [220, 40, 60], [40, 160, 240]]
API_KEY = "browser-test-key"
VIEWPORTS = {"phone": (390, 844, 2, True), "desktop": (1280, 800, 1, False)}  # width, height, scale, mobile
WAIT_S = 30


# -- the browser ---------------------------------------------------------------------------


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER = _find("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver; .ci/run does) to run the browser test",
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,800",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.downloads = downloads
    yield browser
    browser.quit()


def set_viewport(browser, name: str) -> None:
    width, height, scale, mobile = VIEWPORTS[name]
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
    )


# -- the service -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ModelService:
    from atrous.inference.loading import load_inference_model

    folder = save_tiny_segmenter(tmp_path_factory.mktemp("serve") / "model", CLASSES, PALETTE)
    service = ModelService(lambda: load_inference_model(folder, "fp32"), name="tiny", precision="fp32")
    service.load()
    return service


class Server:
    """The app on uvicorn, on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", log_config=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()

    def request(self, path: str, data: bytes | None = None, content_type: str = "image/jpeg", key: str | None = None):
        headers = {"Content-Type": content_type} if data is not None else {}
        if key:
            headers["X-API-Key"] = key
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.read()


@pytest.fixture(scope="module")
def server(service):
    with Server(create_app(service, Limits(), start=False)) as running:
        yield running


# -- the photo and what the server makes of it ----------------------------------------------


def _photo() -> tuple[str, bytes]:
    """A humanseg photo (the first, in name order, of 400–800 px a side) when the data is there,
    else a synthetic one. The docs screenshot (``ATROUS_UPDATE_SCREENSHOT=1``) always uses the
    synthetic one: the datasets keep their own licences, none of their files may go into the
    repository, a screenshot of one included."""
    folder = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "humanseg" / "images"
    if folder.is_dir() and not os.environ.get("ATROUS_UPDATE_SCREENSHOT"):
        for path in sorted(folder.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem)):
            with Image.open(path) as image:
                if min(image.size) >= 400 and max(image.size) <= 800:
                    return path.name, path.read_bytes()
    return "synthetic.jpg", _synthetic_jpeg()


def _synthetic_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A figure (head and shoulders) in front of a soft gradient with a few bright spots."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([90 + 80 * yy / height, 140 + 60 * xx / width, 200 - 40 * yy / height], axis=-1)
    spots = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 900.0) for cx, cy in ((90, 110), (560, 80), (520, 300)))
    rgb = sky + 90 * spots[..., None]
    head = ((xx - 320) / 70) ** 2 + ((yy - 170) / 85) ** 2 < 1
    body = (((xx - 320) / 190) ** 2 + ((yy - 470) / 180) ** 2 < 1) & (yy > 290)
    rgb[head] = (224, 178, 150)
    rgb[body] = (180, 60, 50)
    buffer = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo(server):
    """The photo, and the server's own answers for it: the label map and the JSON summary."""
    name, data = _photo()
    labels = np.array(Image.open(io.BytesIO(server.request("/v1/segment?format=png", data))))
    summary = json.loads(server.request("/v1/segment?format=json", data))
    return {"name": name, "data": data, "labels": labels, "summary": summary}


# -- page helpers ------------------------------------------------------------------------------


def wait(browser, condition, what: str, timeout: float = WAIT_S):
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda b: condition(b))
    except TimeoutException:
        state = browser.execute_script(
            "return {state: document.body.dataset.state, error: document.getElementById('error').textContent,"
            " status: document.getElementById('status').textContent}"
        )
        logs = [entry["message"] for entry in browser.get_log("browser")]
        pytest.fail(f"timed out waiting for {what}; page: {state}; console: {logs}")


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


_READ_PIXELS = """
const [id, b64, done] = arguments;
(async () => {
  let source = id && document.getElementById(id);
  if (!source) {
    const b = atob(b64), a = new Uint8Array(b.length);
    for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
    source = await createImageBitmap(new Blob([a]));
  }
  const width = source.naturalWidth || source.width, height = source.naturalHeight || source.height;
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(source, 0, 0);
  const data = ctx.getImageData(0, 0, width, height).data;
  let binary = '';
  for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  done({width, height, rgba: btoa(binary)});
})().catch((e) => done({error: String(e)}));
"""


def pixels(browser, element_id: str | None = None, data: bytes = b"") -> np.ndarray:
    """RGB pixels, via getImageData at the natural size, of a canvas or image on the page, or
    of an image file as this browser decodes it."""
    result = browser.execute_async_script(_READ_PIXELS, element_id, base64.b64encode(data).decode())
    assert "error" not in result, result
    rgba = np.frombuffer(base64.b64decode(result["rgba"]), dtype=np.uint8)
    return rgba.reshape(result["height"], result["width"], 4)[..., :3].astype(np.int16)


def photo_pixels(browser, data: bytes) -> np.ndarray:
    """The photo as this browser decodes it (what the page composites over)."""
    return pixels(browser, data=data)


def canvas_pixels(browser) -> np.ndarray:
    return pixels(browser, "result")


def portrait_pixels(browser) -> np.ndarray:
    return pixels(browser, "portrait")


def drop_file(browser, name: str, data: bytes, media_type: str = "image/jpeg") -> None:
    """Drop a file on the drop zone, as a drag-and-drop from the desktop does."""
    js(
        browser,
        """
        const [name, b64, type] = arguments;
        const b = atob(b64); const a = new Uint8Array(b.length);
        for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
        const transfer = new DataTransfer();
        transfer.items.add(new File([a], name, {type}));
        const zone = document.getElementById('drop');
        for (const kind of ['dragenter', 'dragover', 'drop']) {
          zone.dispatchEvent(new DragEvent(kind, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
        """,
        name,
        base64.b64encode(data).decode(),
        media_type,
    )


def choose_file(browser, path: Path) -> None:
    browser.find_element(By.ID, "file").send_keys(str(path))


def set_slider(browser, element_id: str, key: str) -> None:
    """Move a range input with the keyboard (Home / End), as a user does."""
    slider = browser.find_element(By.ID, element_id)
    slider.send_keys(key)


def portrait_state(browser) -> list[str]:
    """The portrait's state, the blur it was made with, and how many requests the page sent."""
    return js(browser, "const d = document.getElementById('portrait').dataset; return [d.state, d.blur, d.requests]")


def no_horizontal_scroll(browser) -> None:
    width, inner = js(browser, "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page scrolls sideways: {width} px of content in a {inner} px window"


def open_page(browser, url: str) -> None:
    browser.get(url + "/")
    wait(browser, lambda b: js(b, "return document.body.dataset.state") in ("ready", "error"), "the model description")


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_page_overlay_legend_portrait(driver, server, photo, viewport, tmp_path):
    set_viewport(driver, viewport)
    open_page(driver, server.url)
    assert js(driver, "return document.body.dataset.state") == "ready", js(
        driver, "return document.getElementById('error').textContent"
    )
    assert "tiny" in driver.find_element(By.ID, "model-info").text
    assert js(driver, "return window.innerWidth") == VIEWPORTS[viewport][0]
    no_horizontal_scroll(driver)

    # -- a photo in: dropped on the phone, chosen on the desktop
    if viewport == "phone":
        drop_file(driver, photo["name"], photo["data"])
    else:
        path = tmp_path / photo["name"]
        path.write_bytes(photo["data"])
        choose_file(driver, path)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.state") == "overlay", "the overlay")
    assert driver.find_element(By.ID, "result").is_displayed()
    assert driver.find_element(By.ID, "error").is_displayed() is False

    # -- the overlay, pixel by pixel, against the photo and the server's label map
    original = photo_pixels(driver, photo["data"])
    labels = photo["labels"]
    assert original.shape[:2] == labels.shape, "the page shows the photo at another size than the server read it"
    colours = np.asarray(PALETTE, dtype=np.int16)[labels]
    shown = canvas_pixels(driver)
    assert js(driver, "return document.getElementById('result').dataset.opacity") == "0.5"
    # (1 − α)·photo + α·colour, rounded half to even, as atrous.inference.overlay
    expected = np.round(0.5 * original.astype(np.float32) + 0.5 * colours.astype(np.float32)).astype(np.int16)
    assert np.array_equal(shown, expected), "the overlay is not the photo blended with the class colours"
    mask = labels != 0
    tinted = mask & np.any(colours != original, axis=-1)
    assert tinted.mean() > 0.05, f"too little of the photo is tinted to test ({tinted.mean():.3f})"
    differs = np.any(shown != original, axis=-1)
    assert differs[tinted].mean() > 0.95, "the overlay leaves the photo unchanged where the mask is"
    # (Not compared with the server's format=overlay: the browser applies a photo's ICC
    # profile, the server, like the data loader, reads the pixel values as they are.)

    set_slider(driver, "opacity", Keys.HOME)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "0", "opacity 0")
    assert np.array_equal(canvas_pixels(driver), original), "at opacity 0 the page must show the photo itself"
    assert driver.find_element(By.ID, "opacity-value").text == "0 %"
    set_slider(driver, "opacity", Keys.END)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "1", "opacity 100")
    assert np.array_equal(canvas_pixels(driver), colours), "at opacity 100 the page must show the class colours"
    set_slider(driver, "opacity", Keys.HOME)
    for _ in range(50):
        driver.find_element(By.ID, "opacity").send_keys(Keys.ARROW_RIGHT)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "0.5", "opacity 50")

    # -- the legend: the classes present, names from /v1/model, shares as the server counts them
    model = json.loads(server.request("/v1/model"))
    items = js(
        driver,
        "return [...document.querySelectorAll('#legend li[data-index]')].map(li => ({"
        " index: +li.dataset.index, name: li.querySelector('.name').textContent,"
        " share: +li.dataset.share, text: li.textContent,"
        " swatch: getComputedStyle(li.querySelector('.swatch')).backgroundColor}))",
    )
    present = {c["name"]: c["share"] for c in photo["summary"]["classes"] if c["share"] > 0}
    assert {item["name"] for item in items} == set(present)
    for item in items:
        assert item["name"] == model["classes"][item["index"]]
        assert item["share"] == pytest.approx(present[item["name"]], abs=1e-6)
        assert f"{100 * present[item['name']]:.1f} %" in item["text"]
        assert item["swatch"] == "rgb({}, {}, {})".format(*PALETTE[item["index"]])
    assert [i["share"] for i in items] == sorted((i["share"] for i in items), reverse=True)
    no_horizontal_scroll(driver)
    js(driver, "document.activeElement.blur()")  # no focus ring in the screenshot
    driver.save_screenshot(str(tmp_path / f"serving-{viewport}-overlay.png"))
    if viewport == "desktop" and os.environ.get("ATROUS_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / f"serving-{viewport}-overlay.png", ROOT / "docs" / "serving.png")

    # -- portrait mode: the subject selector from /v1/model, the blur slider asks again
    driver.find_element(By.ID, "mode-portrait").click()
    assert driver.find_element(By.ID, "mode-portrait").get_attribute("aria-pressed") == "true"
    subjects = js(driver, "return [...document.getElementById('subject').options].map(o => o.value)")
    assert subjects == model["classes"]
    assert driver.find_element(By.ID, "subject").get_attribute("value") == model["subject_default"]
    wait(driver, lambda b: js(b, "return document.getElementById('portrait').dataset.state") == "ready", "a portrait")
    assert driver.find_element(By.ID, "portrait").is_displayed()
    assert not driver.find_element(By.ID, "result").is_displayed()
    first = portrait_pixels(driver)
    assert first.shape == original.shape
    requests = int(js(driver, "return document.getElementById('portrait').dataset.requests"))
    assert requests == 1
    # Ten steps in quick succession (25 → 35 px) ask once, after the slider rests (twice at
    # most, should the machine stall between two key presses); then 100 px.
    driver.find_element(By.ID, "blur").send_keys(*[Keys.ARROW_RIGHT] * 10)
    wait(driver, lambda b: portrait_state(b)[:2] == ["ready", "35"], "the portrait at blur 35")
    requests = int(portrait_state(driver)[2])
    assert requests <= 3, f"{requests - 1} requests for ten steps of the blur slider: not debounced"
    set_slider(driver, "blur", Keys.END)
    wait(driver, lambda b: portrait_state(b) == ["ready", "100", str(requests + 1)], "the portrait at blur 100")
    assert driver.find_element(By.ID, "blur-value").text == "100 px"
    second = portrait_pixels(driver)
    assert np.abs(second - first).mean() > 0.5, "moving the blur slider did not change the portrait"
    no_horizontal_scroll(driver)
    driver.save_screenshot(str(tmp_path / f"serving-{viewport}-portrait.png"))

    if viewport == "desktop":
        # The portrait shown is the server's, for the chosen subject and blur, byte for byte.
        expected_jpeg = server.request(f"/v1/portrait?subject={model['subject_default']}&blur=100", photo["data"])
        # -- downloads: the overlay as composited, the portrait as served
        driver.find_element(By.ID, "download-portrait").click()
        driver.find_element(By.ID, "mode-overlay").click()
        driver.find_element(By.ID, "download").click()
        stem = Path(photo["name"]).stem
        saved_portrait = driver.downloads / f"{stem}-portrait.jpg"
        saved_overlay = driver.downloads / f"{stem}-overlay.png"
        wait(driver, lambda b: saved_portrait.is_file() and saved_overlay.is_file(), "the downloads", timeout=10)
        time.sleep(0.2)  # the browser renames the finished file into place; let it be complete
        assert saved_portrait.read_bytes() == expected_jpeg
        assert np.array_equal(np.array(Image.open(saved_overlay).convert("RGB"), dtype=np.int16), expected)

    # Only this server was asked for anything; no console errors.
    origins = js(driver, "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith((server.url, "blob:", "data:")) for name in origins), origins
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_page_reports_errors_and_sends_the_api_key(driver, service):
    """A wrong upload shows the server's reason; a keyed server asks for the key, and the page
    sends it (X-API-Key) once it is typed in."""
    with Server(create_app(service, Limits(), api_key=API_KEY, start=False)) as keyed:
        set_viewport(driver, "phone")
        driver.get(keyed.url + "/")
        js(driver, "sessionStorage.clear()")
        open_page(driver, keyed.url)
        error = driver.find_element(By.ID, "error")
        assert error.is_displayed() and "API key" in error.text and "401" in error.text
        assert driver.find_element(By.ID, "key-box").get_attribute("open") is not None
        field = driver.find_element(By.ID, "api-key")
        field.send_keys(API_KEY, Keys.ENTER)
        wait(driver, lambda b: js(b, "return document.body.dataset.state") == "ready", "the model after the key")
        assert not error.is_displayed()
        assert js(driver, "return sessionStorage.getItem('atrous.apiKey')") == API_KEY

        drop_file(driver, "notes.png", b"this is not a picture", "image/png")
        wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.state") == "failed", "a refusal")
        text = error.text
        assert error.is_displayed() and "HTTP 400" in text, text
        detail = json.loads(_refusal(keyed, b"this is not a picture"))["detail"]
        assert detail in text
        no_horizontal_scroll(driver)
        # The page's own answers to the 401 and the 400 are the only console errors.
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert all("401" in e or "400" in e for e in errors), errors


def _refusal(server: Server, data: bytes) -> bytes:
    try:
        server.request("/v1/segment?format=png", data, "image/png", key=API_KEY)
    except urllib.error.HTTPError as refusal:
        return refusal.read()
    raise AssertionError("the server accepted a non-image")


def test_page_waits_for_the_model_to_load(driver, service):
    """Opened while the model still loads (503 with Retry-After), the page says so and asks
    again until it is ready."""
    gate = threading.Event()

    def slow_loader():
        gate.wait(WAIT_S)
        return service.model

    loading = ModelService(slow_loader, name="late", precision="fp32")
    try:
        with Server(create_app(loading, Limits(), start=True)) as late:
            set_viewport(driver, "desktop")
            driver.get(late.url + "/")
            info = driver.find_element(By.ID, "model-info")
            wait(driver, lambda b: "loading" in info.text, "the page to say the model is loading")
            assert not driver.find_element(By.ID, "error").is_displayed()
            gate.set()
            wait(driver, lambda b: js(b, "return document.body.dataset.state") == "ready", "the model once loaded")
            assert "late" in info.text
    finally:
        gate.set()


def test_page_turns_phone_photos_upright(driver, server):
    """A phone photo stored sideways with an EXIF orientation: the page shows it upright and
    lays the label map on it the right way round (the server turns it upright too)."""
    image = Image.open(io.BytesIO(_synthetic_jpeg(480, 360)))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels are to be turned 90° clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif)
    data = buffer.getvalue()
    labels = np.array(Image.open(io.BytesIO(server.request("/v1/segment?format=png", data))))
    assert labels.shape == (480, 360)

    set_viewport(driver, "phone")
    open_page(driver, server.url)
    drop_file(driver, "sideways.jpg", data)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.state") == "overlay", "the overlay")
    set_slider(driver, "opacity", Keys.END)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "1", "opacity 100")
    assert np.array_equal(canvas_pixels(driver), np.asarray(PALETTE, dtype=np.int16)[labels])
    assert np.array_equal(photo_pixels(driver, data).shape[:2], labels.shape)
    no_horizontal_scroll(driver)


def test_page_shows_a_format_only_the_server_reads(driver, server):
    """A TIFF, which chromium cannot decode but Pillow can: the page shows the server's copy
    of the photo (format=overlay at opacity 0) under the label map."""
    rgb = np.array(Image.open(io.BytesIO(_synthetic_jpeg(320, 240))))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="TIFF")
    data = buffer.getvalue()
    labels = np.array(Image.open(io.BytesIO(server.request("/v1/segment?format=png", data, "image/tiff"))))

    set_viewport(driver, "desktop")
    open_page(driver, server.url)
    drop_file(driver, "scan.tif", data, "image/tiff")
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.state") == "overlay", "the overlay")
    assert not driver.find_element(By.ID, "error").is_displayed()
    set_slider(driver, "opacity", Keys.HOME)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "0", "opacity 0")
    assert np.array_equal(canvas_pixels(driver), rgb)
    set_slider(driver, "opacity", Keys.END)
    wait(driver, lambda b: js(b, "return document.getElementById('result').dataset.opacity") == "1", "opacity 100")
    assert np.array_equal(canvas_pixels(driver), np.asarray(PALETTE, dtype=np.int16)[labels])
