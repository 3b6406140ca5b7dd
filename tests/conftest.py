"""Shared fixtures: one studio server per test session, launched exactly as `python app.py` does."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Every device call in tests pickles its arguments and result, as ZeroGPU does (the server started
# below inherits it too).
os.environ["STUDIO_CHECK_BOUNDARY"] = "1"

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
# reader studies made by tests (the server's too) go to a file of their own, not the studio's default
os.environ.setdefault("STUDIO_STUDY_DB", str(ARTIFACTS / "studies.sqlite"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Seconds until `url` answers 200; fails if the process dies or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop_process(proc: subprocess.Popen, grace: float = 15) -> None:
    """Terminate a server started for a test or a benchmark; kill it if it does not stop in time."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def studio_server():
    """URL of a studio started with `python app.py` on a free localhost port (bundled models)."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "server.log"
    env = dict(os.environ, STUDIO_MODEL_SOURCE="bundled", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, timeout=120, proc=proc)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def studio_client(studio_server):
    from gradio_client import Client

    return Client(studio_server, verbose=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Token-by-token decoding is overhead-bound; on a shared 2-core machine a second thread makes
    it many times slower, so decoding tests run single-threaded and restore the setting after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
