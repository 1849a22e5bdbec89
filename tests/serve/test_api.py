"""atrous serve's HTTP contract: every endpoint, every refusal, the worker pool under load, SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests._reliability import ForkedCli
from tests.helpers import save_tiny_segmenter

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from atrous.inference import Predictor  # noqa: E402
from atrous.serve import Limits, create_app  # noqa: E402
from atrous.serve.service import ModelService  # noqa: E402

CLASSES = ["background", "person", "cat"]
PALETTE = [[0, 0, 0], [200, 40, 40], [40, 200, 40]]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_segmenter(tmp_path_factory.mktemp("serve") / "model", CLASSES, PALETTE)


@pytest.fixture(scope="module")
def service(model_dir) -> ModelService:
    from atrous.inference.loading import load_inference_model

    service = ModelService(lambda: load_inference_model(model_dir, "fp32"), name="tiny", precision="fp32")
    service.load()
    return service


def client_for(service, api_key=None, **limits) -> TestClient:
    return TestClient(create_app(service, Limits(**limits), api_key=api_key, start=False))


@pytest.fixture
def client(service):
    with client_for(service) as client:
        yield client


def png_bytes(width=64, height=48, seed=0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def post_png(client, path, data=None, headers=None, **kwargs):
    headers = {"Content-Type": "image/png", **(headers or {})}
    return client.post(path, content=png_bytes() if data is None else data, headers=headers, **kwargs)


# -- the endpoints ---------------------------------------------------------------------------


def test_model_health_ready_docs_and_page(client):
    info = client.get("/v1/model").json()
    assert info == {
        "name": "tiny",
        "task": "semantic",
        "classes": CLASSES,
        "palette": PALETTE,
        "output_stride": info["output_stride"],
        "base_size": None,  # the tiny model was not trained with data.base_size
        "precision": "fp32",
        "scales": [1.0],  # one pass unless atrous serve was given --scales/--flip
        "flip": False,
        "subject_default": "person",
    }
    assert info["output_stride"] in (8, 16, 32)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/model", "/v1/segment", "/v1/portrait", "/healthz", "/readyz"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_png_labels_are_the_predictors(client, service):
    data = png_bytes()
    response = post_png(client, "/v1/segment", data)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    label_map = Image.open(io.BytesIO(response.content))
    assert label_map.mode == "P" and label_map.size == (64, 48)
    assert label_map.getpalette()[:9] == [v for c in PALETTE for v in c]
    expected = Predictor(service.model, precision="fp32")(np.array(Image.open(io.BytesIO(data)))).labels
    np.testing.assert_array_equal(np.array(label_map), expected)


def test_multipart_overlay_and_json(client):
    data = png_bytes()
    files = {"image": ("photo.png", data, "image/png")}
    overlay = client.post("/v1/segment?format=overlay&alpha=0.0", files=files)
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    shown = Image.open(io.BytesIO(overlay.content))
    assert shown.mode == "RGB"
    np.testing.assert_array_equal(np.array(shown), np.array(Image.open(io.BytesIO(data))))  # alpha 0: the photo
    summary = client.post("/v1/segment?format=json", files=files).json()
    assert summary["model"] == "tiny" and (summary["width"], summary["height"]) == (64, 48)
    assert [c["name"] for c in summary["classes"]] == CLASSES
    assert [c["index"] for c in summary["classes"]] == [0, 1, 2]
    assert sum(c["share"] for c in summary["classes"]) == pytest.approx(1.0)
    assert set(summary["timing_ms"]) == {"decode", "inference", "encode"}


def test_accept_chooses_the_format(client):
    as_json = post_png(client, "/v1/segment", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json" and "classes" in as_json.json()
    as_png = post_png(client, "/v1/segment", headers={"Accept": "image/png"})
    assert as_png.headers["content-type"] == "image/png"
    query_wins = post_png(client, "/v1/segment?format=png", headers={"Accept": "application/json"})
    assert query_wins.headers["content-type"] == "image/png"
    bad = post_png(client, "/v1/segment?format=gif")
    assert bad.status_code == 400 and "format" in bad.json()["detail"]


def test_portrait_is_a_jpeg_of_the_input_size(client):
    response = post_png(client, "/v1/portrait?subject=person&blur=5")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == "JPEG" and picture.size == (64, 48)
    unknown = post_png(client, "/v1/portrait?subject=dog")
    assert unknown.status_code == 400 and "dog" in unknown.json()["detail"]
    assert post_png(client, "/v1/portrait?blur=-1").status_code == 400


def test_test_time_flips_and_scales_reach_segment_and_portrait(model_dir):
    from atrous.inference import portrait
    from atrous.inference.loading import load_inference_model
    from atrous.serve.encode import rgb_jpeg

    tta = ModelService(
        lambda: load_inference_model(model_dir, "fp32"), name="tta", precision="fp32", scales=[0.75, 1.0], flip=True
    )
    tta.load()
    data = png_bytes(seed=3)
    rgb = np.array(Image.open(io.BytesIO(data)))
    with client_for(tta) as client:
        info = client.get("/v1/model").json()
        assert (info["scales"], info["flip"]) == ([0.75, 1.0], True)
        labels = np.array(Image.open(io.BytesIO(post_png(client, "/v1/segment", data).content)))
        blurred = post_png(client, "/v1/portrait?subject=person&blur=5", data)
    expected = Predictor(tta.model, precision="fp32", scales=[0.75, 1.0], flip=True)(rgb).labels
    np.testing.assert_array_equal(labels, expected)
    one_pass = Predictor(tta.model, precision="fp32")(rgb).labels
    assert not np.array_equal(expected, one_pass)  # the options changed something to check
    reference = portrait(
        rgb, model=tta.model, subject_class="person", blur=5, precision="fp32", scales=[0.75, 1.0], flip=True
    )
    assert blurred.content == rgb_jpeg(reference)  # the same pixels, encoded alike
    plain = portrait(rgb, model=tta.model, subject_class="person", blur=5, precision="fp32")
    assert blurred.content != rgb_jpeg(plain)
    for bad in ([0.0], [1.0, float("inf")], [float("nan")]):
        with pytest.raises(ValueError, match="scales must be positive finite numbers"):
            ModelService(lambda: None, name="bad", scales=bad)


def test_the_page_and_its_static_files(client, service, tmp_path, monkeypatch):
    import atrous.serve.app as app_module

    for name in ("index.html", "app.js", "style.css"):
        if (app_module.STATIC / name).is_file():
            assert client.get(f"/static/{name}").status_code == 200
    monkeypatch.setattr(app_module, "STATIC", tmp_path / "no_page")  # an install without the page
    with client_for(service) as bare:
        page = bare.get("/")
        assert page.status_code == 200 and 'href="/docs"' in page.text


# -- refusals ----------------------------------------------------------------------------------


def test_body_over_max_bytes_is_413(service):
    with client_for(service, max_bytes=1000) as client:
        data = png_bytes()
        assert len(data) > 1000
        response = post_png(client, "/v1/segment", data)
        assert response.status_code == 413 and "--max-bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: counted while reading
            for i in range(0, len(data), 256):
                yield data[i : i + 256]

        chunked = client.post("/v1/segment", content=chunks(), headers={"Content-Type": "image/png"})
        assert chunked.status_code == 413


def test_image_over_the_pixel_limit_is_413_naming_it(service):
    with client_for(service, max_pixels=1000) as client:
        response = post_png(client, "/v1/segment")
        assert response.status_code == 413
        assert "1,000 pixels" in response.json()["detail"] and "--max-pixels" in response.json()["detail"]


def test_the_default_pixel_limit_is_the_data_loaders():
    assert Limits().max_pixels == Image.MAX_IMAGE_PIXELS


def test_a_pixel_limit_above_pillows_own_is_the_limit(service, monkeypatch):
    # Pillow refuses an image over twice its MAX_IMAGE_PIXELS as it opens it, before the
    # service's check; a larger --max-pixels must hold instead (Pillow's made small here).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with client_for(service, max_pixels=5000) as client:
        assert post_png(client, "/v1/segment", png_bytes(64, 48)).status_code == 200  # 3,072 pixels
        over = post_png(client, "/v1/segment", png_bytes(80, 70))  # 5,600
        assert over.status_code == 413 and "5,000 pixels (--max-pixels)" in over.json()["detail"]


def test_an_image_over_the_memory_budget_is_413(service, monkeypatch):
    # With a base size the network sees a 20000×1 strip at 1280000×64: over the predictor's
    # 2 GiB budget, refused by its plan before anything is allocated.
    monkeypatch.setattr(service.predictor, "base_size", 64)
    with client_for(service) as client:
        response = post_png(client, "/v1/segment", png_bytes(20000, 1))
    assert response.status_code == 413
    assert "is 64×1280000 for the network (base size 64)" in response.json()["detail"]


def test_an_unexpected_failure_is_json_too(service, monkeypatch):
    def broken(rgb):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(service, "segment", broken)
    app = create_app(service, Limits(), start=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = post_png(client, "/v1/segment")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error (RuntimeError: something broke)"}


def test_garbage_truncated_and_wrong_type(client):
    garbage = post_png(client, "/v1/segment", b"this is not an image at all")
    assert garbage.status_code == 400 and "not an image" in garbage.json()["detail"]
    truncated = post_png(client, "/v1/segment", png_bytes()[:400])
    assert truncated.status_code == 400 and "truncated" in truncated.json()["detail"]
    text = client.post("/v1/segment", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and "text/plain" in text.json()["detail"]
    no_field = client.post("/v1/segment", files={"photo": ("a.png", png_bytes(), "image/png")})
    assert no_field.status_code == 400 and "'image'" in no_field.json()["detail"]


def test_api_key(service):
    with client_for(service, api_key="s3cret") as client:
        assert client.get("/v1/model").status_code == 401
        assert client.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
        assert post_png(client, "/v1/segment").status_code == 401
        assert client.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        for open_path in ("/", "/healthz", "/readyz"):
            assert client.get(open_path).status_code == 200


# -- the pool: busy, full, too slow ------------------------------------------------------------


@pytest.fixture
def gated(service, monkeypatch):
    """Predictions wait for ``gate`` (at most 10 s); ``started`` is set when one begins."""
    gate, started = threading.Event(), threading.Event()
    segment = service.segment

    def slow(rgb):
        started.set()
        gate.wait(10)
        return segment(rgb)

    monkeypatch.setattr(service, "segment", slow)
    yield gate, started
    gate.set()


def test_full_queue_is_429_and_health_answers_while_busy(service, gated):
    gate, started = gated
    with client_for(service, workers=1, queue=0) as client:
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(r=post_png(client, "/v1/segment")))
        thread.start()
        assert started.wait(10)
        busy = post_png(client, "/v1/segment")
        assert busy.status_code == 429 and busy.headers["Retry-After"].isdigit()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        gate.set()
        thread.join(10)
        assert first["r"].status_code == 200
        assert post_png(client, "/v1/segment").status_code == 200  # the place was given back


def test_a_request_over_the_timeout_is_503(service, gated):
    gate, _ = gated
    with client_for(service, timeout=0.3) as client:
        response = post_png(client, "/v1/segment")
        assert response.status_code == 503 and "timeout" in response.json()["detail"]
        gate.set()


def test_ready_only_after_load_and_warm_up(model_dir):
    from atrous.inference.loading import load_inference_model

    gate = threading.Event()

    def loader():
        gate.wait(10)
        return load_inference_model(model_dir, "fp32")

    service = ModelService(loader, name="late", precision="fp32")
    with client_for(service) as client:  # the app starts loading
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/model").status_code == 503
        warm = service.predictor  # none yet
        gate.set()
        assert service.wait_ready(30)
        assert warm is None and service.predictor is not None
        assert client.get("/readyz").status_code == 200


# -- the CLI -----------------------------------------------------------------------------------


def test_bad_cli_input_is_one_line_and_exit_2(tmp_path, capsys):
    from atrous.cli import main

    for argv in (["serve"], ["serve", "x", "--port", "http"], ["serve", "x", "--queue", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("atrous serve: error:")
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    (tmp_path / "there").mkdir()
    for bad, says in ((["--scales", "0"], "--scales must be positive"), (["--ms", "--scales", "1"], "not both")):
        assert main(["serve", str(tmp_path / "there"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0]
    (tmp_path / "empty").mkdir()  # exists, but holds no model: found while loading, after the server started
    # A started server configures logging and signal handlers: in a process of its own, not in pytest's.
    cli = ForkedCli()
    env = dict(os.environ)
    result = cli.run(["serve", str(tmp_path / "empty"), "--port", "0"], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.describe()
    assert result.stderr.strip().splitlines()[-1].startswith("atrous serve: error: ") and "warning" not in result.stderr
    argv = ["serve", str(tmp_path / "empty"), "--port", "0", "--host", "0.0.0.0"]
    result = cli.run(argv, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.describe()
    assert "atrous serve: warning: listening on 0.0.0.0" in result.stderr


_SLOW_SERVE = """
import sys, time
import atrous.inference.predictor as p
call = p.Predictor.__call__
def slow(self, *args, **kwargs):
    time.sleep(1.5)
    return call(self, *args, **kwargs)
p.Predictor.__call__ = slow
from atrous.cli import main
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def serve_command(script: str, model_dir: Path, port: int) -> list[str]:
    """``atrous serve MODEL --port PORT``, run by ``script`` (which patches what it needs first)."""
    return [sys.executable, "-c", script, "serve", str(model_dir), "--port", str(port), "--precision", "fp32"]


def serve_process(script: str, model_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = serve_command(script, model_dir, port)
    process = subprocess.Popen(command, env=SERVE_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def wait_for_readyz(process: subprocess.Popen, base: str, status: int, timeout: float = 60) -> None:
    """Poll ``/readyz`` until it answers ``status`` (200: ready; 503: up, still loading)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == status:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"/readyz never answered {status}"
        time.sleep(0.2)


def test_sigterm_finishes_the_request_in_flight_and_exits_0(model_dir):
    process, base = serve_process(_SLOW_SERVE, model_dir)
    try:
        wait_for_readyz(process, base, 200)
        result: dict = {}

        def request():
            result["r"] = httpx.post(
                f"{base}/v1/segment?format=json", content=png_bytes(), headers={"Content-Type": "image/png"}, timeout=30
            )

        thread = threading.Thread(target=request)
        thread.start()
        time.sleep(0.5)  # the prediction is under way (it sleeps 1.5 s first)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(f"{base}/healthz", timeout=1)
        thread.join(30)
        assert result["r"].status_code == 200 and json.loads(result["r"].content)["width"] == 64
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


_SLOW_LOAD = """
import sys, torch
import atrous.inference.loading as loading
load = loading.load_inference_model
def slow(*args, **kwargs):
    a = torch.randn(512, 512)
    for _ in range(100_000):  # inside torch, as a real load is, until the process ends
        a = torch.tanh(a @ a)
    return load(*args, **kwargs)
loading.load_inference_model = slow
from atrous.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_while_the_model_loads_ends_cleanly(model_dir, sig, code):
    """Before, the interpreter was torn down under the loading thread: SIGABRT, 'terminate called'."""
    process, base = serve_process(_SLOW_LOAD, model_dir)
    try:
        wait_for_readyz(process, base, 503)  # up, and still loading
        process.send_signal(sig)
        assert process.wait(30) == code, process.stdout.read()
        assert "terminate called" not in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_busy_port_while_the_model_loads_is_exit_2_naming_it(model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = serve_command(_SLOW_LOAD, model_dir, port)
        result = subprocess.run(command, env=SERVE_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"atrous serve: error: could not listen on 127.0.0.1:{port} (see the message above)"
    assert "terminate called" not in result.stderr
