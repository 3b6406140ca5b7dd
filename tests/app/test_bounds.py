"""Bounds before work: the shared image reader refuses oversize files from the header alone (bombs
built small on disk), reads 16-bit, float, alpha and palette data as they are; uploads reach the
handler undecoded; request bodies are limited, inline data: payloads included; named routes
answer for public endpoints only."""
from __future__ import annotations

import base64
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from adapters.common.errors import BadInput
from adapters.common.imaging import read_rgb_image
from tests.fuzz import corpus

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "assets" / "i2v" / "examples" / "chelsea_pan_left.png"
RSS_LIMIT_MB = 200


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("corpus"), EXAMPLE)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", ["bomb_20000.png", "bomb_9000_gray.png", "long_side.png"])
def test_bombs_are_refused_from_the_header_fast_and_small(files, name):
    assert files[name].stat().st_size < 200_000  # built small on disk
    peak_before, start = _peak_mb(), time.perf_counter()
    with pytest.raises(BadInput, match="too large") as caught:
        read_rgb_image(files[name])
    assert time.perf_counter() - start < 1.0
    assert _peak_mb() - peak_before < RSS_LIMIT_MB
    assert "megapixels" in str(caught.value) and "/" not in str(caught.value)


def test_unusual_images_are_read_as_they_are(files):
    gray16 = read_rgb_image(files["gray16.png"])
    assert gray16.dtype == np.uint8 and int(gray16.max()) - int(gray16.min()) > 200  # stretched, not one colour
    as_float = read_rgb_image(files["float32.tiff"])
    assert int(as_float.max()) - int(as_float.min()) > 200
    rgba = read_rgb_image(files["rgba.png"])
    assert tuple(rgba[0, 0]) == (255, 255, 255)  # transparent: composited over white
    assert tuple(rgba[48, 64]) == (200, 0, 0)  # opaque red inside the disc
    assert read_rgb_image(files["palette.png"]).shape == (96, 128, 3)
    assert read_rgb_image(files["animated.gif"]).shape == (96, 128, 3)  # the first frame


@pytest.mark.parametrize("name, words", [("zero_bytes.png", "not an image"), ("truncated.png", "not an image"),
                                         ("text_renamed.png", "not an image"), ("header_only.png", "not an image"),
                                         ("tiny_4px.png", "too small")])
def test_bad_files_get_a_sentence_without_a_path(files, name, words):
    with pytest.raises(BadInput, match=words) as caught:
        read_rgb_image(files[name])
    assert str(files[name].parent) not in str(caught.value)


def test_fgsa_reads_16_bit_images_and_bounds_the_mask(files):
    from adapters.fgsa import io

    assert io.read_rgb(files["gray16.png"]).std() > 10  # was refused as "one flat colour" after 8-bit conversion
    assert io.read_mask(files["gray16.png"], 32).shape == (32, 32)
    with pytest.raises(BadInput, match="Ground-truth mask: .*too large"):
        io.read_mask(files["bomb_20000.png"], 32)
    with pytest.raises(BadInput, match="mask is 4x4 pixels but the image is 128x96: they must match"):
        io.read_mask(files["tiny_4px.png"], 32, image_hw=(96, 128))


def test_i2v_keeps_the_first_frame_of_a_16_bit_image(files):
    from adapters.i2v.io import load_image

    prepared = load_image(files["gray16.png"], 32)
    assert prepared.pixels.std() > 0.05  # not a white frame


def test_image_uploads_reach_the_handler_undecoded(files, tmp_path):
    import gradio as gr
    from gradio.data_classes import ImageData

    from studio.uploads import ImageFile

    component = ImageFile(label="x", type="filepath", image_mode=None)
    assert component.get_block_name() == "image"  # the page's widget is the ordinary one
    with gr.Blocks() as demo:
        ImageFile(label="x", type="filepath", image_mode=None, sources=["upload"])
    props = demo.get_config_file()["components"][0]["props"]
    assert props["label"] == "x" and props["sources"] == ["upload"]  # the page gets every property
    # a zero-byte or bomb file is not opened here: the reader refuses it with the tab's words
    assert component.preprocess(ImageData(path=str(files["bomb_20000.png"]))) == str(files["bomb_20000.png"])
    raw = files["gray16.png"].read_bytes()
    inline = "data:image/png;base64," + base64.b64encode(raw).decode()
    saved = component.preprocess(ImageData(url=inline))
    assert Path(saved).read_bytes() == raw  # the 16-bit bytes as sent, not an 8-bit re-encoding


def _guarded_app(limit: int):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from studio.guard import RequestGuard

    async def echo(request):
        return JSONResponse({"size": len(await request.body())})

    inner = Starlette(routes=[Route("/gradio_api/queue/join", echo, methods=["POST"]),
                              Route("/gradio_api/run/{name}", echo, methods=["POST"])])
    return RequestGuard(inner, max_body_bytes=limit, public_names=lambda: {"open"}, public_indices=lambda: {0},
                        page_indices=lambda: {3})


def test_request_bodies_over_the_limit_are_refused_inline_data_included():
    from starlette.testclient import TestClient

    client = TestClient(_guarded_app(limit=1000))
    assert client.post("/gradio_api/queue/join", content=b"x" * 900).json() == {"size": 900}
    payload = '{"data": [{"url": "data:image/png;base64,' + "A" * 2000 + '"}]}'
    refused = client.post("/gradio_api/queue/join", content=payload)
    assert refused.status_code == 413 and "the limit is 0.0 MB" in refused.json()["detail"]

    def chunks():  # no content-length: counted as it arrives
        for _ in range(5):
            yield b"y" * 400

    streamed = client.post("/gradio_api/queue/join", content=chunks())
    assert streamed.status_code == 413 and "Upload large files as files" in streamed.json()["detail"]


def test_named_routes_answer_for_public_endpoints_only():
    from starlette.testclient import TestClient

    client = TestClient(_guarded_app(limit=10_000))
    assert client.post("/gradio_api/run/open", json={"data": []}).status_code == 200
    hidden = client.post("/gradio_api/run/fgsa_edit_band", json={"data": []})
    assert hidden.status_code == 404 and "no public endpoint" in hidden.json()["detail"]
    by_index = client.post("/gradio_api/run/open", json={"data": [], "fn_index": 7})
    assert by_index.status_code == 404
    # the page's own path for handlers that skip the queue (an example filling the inputs)
    assert client.post("/gradio_api/run/predict", json={"data": [], "fn_index": 3}).status_code == 200
    assert client.post("/gradio_api/run/predict", json={"data": [], "fn_index": 7}).status_code == 404
    assert client.post("/gradio_api/run/predict", json={"data": []}).status_code == 404


def test_body_limit_follows_the_upload_limit():
    from studio import settings

    assert settings.max_body_bytes() == 64 * 2**20 + 2**20


def test_server_cache_paths_are_shown_as_an_alias_and_mapped_back():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from studio.guard import HideServerPaths

    cache = "/srv/private/gradio"
    seen = {}

    async def join(request):
        seen["body"] = (await request.body()).decode()
        return JSONResponse({"path": f"{cache}/abc/out.png", "url": f"/gradio_api/file={cache}/abc/out.png"})

    async def file(request):
        seen["file"] = request.url.path
        return PlainTextResponse("pixels")

    inner = Starlette(routes=[Route("/gradio_api/queue/join", join, methods=["POST"]),
                              Route("/gradio_api/{rest:path}", file)])
    client = TestClient(HideServerPaths(inner, cache_dir=cache))

    def split_body():  # the alias split across two chunks
        yield b'{"data": [{"path": "studio-ca'
        yield b'che/abc/in.png"}]}'

    answer = client.post("/gradio_api/queue/join", content=split_body(), headers={"content-type": "application/json"})
    assert seen["body"] == '{"data": [{"path": "/srv/private/gradio/abc/in.png"}]}'
    assert answer.json() == {"path": "studio-cache/abc/out.png", "url": "/gradio_api/file=studio-cache/abc/out.png"}
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert client.get("/gradio_api/file=studio-cache/abc/out.png").text == "pixels"
    assert seen["file"] == "/gradio_api/file=/srv/private/gradio/abc/out.png"
