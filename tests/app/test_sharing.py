"""Fair sharing: the quick lane runs beside the heavy one, and a client holds at most its cap of
queue places, with a sentence beyond it (a real Gradio server in this process)."""
from __future__ import annotations

import threading
import time

import gradio as gr
import pytest

from studio import guard, settings
from studio.shell import HEAVY, LIGHT, QUICK
from tests.conftest import free_port

CAP = 2


@pytest.fixture(scope="module")
def lanes_server():
    release = threading.Event()

    def long_job(x):
        release.wait(30)
        return f"long {x}"

    def short_job(x):
        return f"short {x}"

    def edit(x):
        return f"edit {x}"

    with gr.Blocks() as demo:
        text, out = gr.Textbox(), gr.Textbox()
        gr.Button("long").click(long_job, text, out, api_name="long", **HEAVY)
        gr.Button("short").click(short_job, text, out, api_name="short", **QUICK)
        gr.Button("edit").click(edit, text, out, api_name="edit", **LIGHT)
    demo.queue(max_size=32)
    # a loopback peer: its forwarded address counts; only model lanes count toward a session's cap
    guard.cap_jobs_per_client(demo._queue, CAP, lanes=(settings.HEAVY, settings.QUICK))
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True,
                app_kwargs=guard.app_kwargs(demo, settings.max_body_bytes()))
    yield f"http://127.0.0.1:{port}/", release, demo
    release.set()
    demo.close()


def _join(url: str, demo, api_name: str, session: str, address: str):
    import httpx

    index = next(i for i, fn in demo.fns.items() if fn.api_name == api_name)
    return httpx.post(f"{url}gradio_api/queue/join", headers={"X-Forwarded-For": address}, timeout=10,
                      json={"data": ["x"], "fn_index": index, "session_hash": session, "event_data": None})


@pytest.mark.e2e  # starts a server (about 20 s here)
def test_one_client_holds_at_most_its_cap_and_the_quick_lane_runs_beside_the_heavy(lanes_server):
    from gradio_client import Client

    url, release, demo = lanes_server
    answers = [_join(url, demo, "long", "holder", "10.0.0.1") for _ in range(CAP + 2)]
    assert [a.status_code for a in answers] == [200] * CAP + [400] * 2
    assert all(f"You already have {CAP} requests waiting or running (at most {CAP} at a time)" in a.json()["detail"]
               for a in answers[CAP:])
    # a quick re-render of the same session is not a model run: it is not refused
    assert _join(url, demo, "edit", "holder", "10.0.0.1").status_code == 200
    # the same address under other sessions: up to ADDRESS_SHARE times the cap (every event counts)
    more = [_join(url, demo, "long", f"tab{i}", "10.0.0.1") for i in range(guard.ADDRESS_SHARE * CAP)]
    accepted = sum(a.status_code == 200 for a in more)
    assert accepted in ((guard.ADDRESS_SHARE - 1) * CAP - 1, (guard.ADDRESS_SHARE - 1) * CAP)  # the edit may be done
    assert "Your address already has" in more[-1].json()["detail"]
    # another client, while the heavy lane is busy: the quick lane answers at once
    other = Client(url, verbose=False, headers={"X-Forwarded-For": "10.0.0.2"})
    start = time.perf_counter()
    assert other.predict("x", api_name="/short") == "short x"
    assert time.perf_counter() - start < 3.0
    release.set()


def test_the_app_wires_quick_and_heavy_lanes():
    import app

    lanes = {fn.api_name: fn.concurrency_id for fn in app.demo.fns.values() if fn.api_name}
    assert lanes["kangaroo_generate"] == lanes["fgsa_segment"] == settings.QUICK
    assert lanes["filter2noise_denoise"] == lanes["animate"] == settings.HEAVY
    assert getattr(app.demo._queue.push, "__name__", "") == "push" and app.demo._queue.push.__module__ == "studio.guard"
