"""Small helpers every tab handler uses: errors, the device call, timing, parameter counts,
downloads. Layout pieces are in `studio.shell`."""
from __future__ import annotations

import functools
import logging
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from adapters.common.contract import PaperSpec
from adapters.common.errors import BadInput
from studio import device as _device
from studio import settings
from studio.loader import MODELS, LoadedModel, ModelSourceError

log = logging.getLogger("studio")


def friendly(action: str):
    """Wrap a handler so a user only ever sees a plain message, never a stack trace.

    `BadInput` and `ModelSourceError` keep their own words; anything unexpected is logged with its
    trace and reported as a short error naming the action, so one user's bad request cannot take
    the server (or anybody else's session) down.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except (BadInput, ModelSourceError) as exc:
                raise gr.Error(str(exc), title="Cannot use this input") from None
            except Exception as exc:  # unexpected: log it, tell the user plainly
                log.exception("%s failed", action)
                raise gr.Error(f"{action} failed unexpectedly ({type(exc).__name__}). The details were logged.") from None

        return wrapper

    return decorate


def call_device(key: str, entry: str, request: Any, progress=None) -> _device.DeviceRun:
    """Run ``adapters.<key>.inference.<entry>(bundle, request)`` on the device, with the request
    already validated. ``progress`` (a `gr.Progress`) receives the reports where the work runs in
    this process; on ZeroGPU it marks only the start and the end."""
    callback = (lambda fraction, desc: progress(fraction, desc=desc)) if progress is not None else None
    if callback:
        callback(0.0, "Starting")
    with _device.progress_to(callback):
        run = _device.run_paper(key, entry, request)
    if callback:
        callback(1.0, "Rendering")
    return run


def get_model(spec: PaperSpec) -> LoadedModel:
    """The tab's model in this process (loaded once), for validation that needs it (a tokenizer,
    the available exit layers); a hub fallback is told to the user as a warning."""
    loaded = MODELS.get(spec)
    if loaded.notice:
        gr.Warning(loaded.notice)
    return loaded


def format_count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f} B"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    return f"{n:,}"


def params_markdown(adapter: int, frozen: int) -> str:
    share = f" ({100 * adapter / frozen:.2f}% of the frozen model)" if frozen else ""
    return f"**Adapter:** {format_count(adapter)} trainable parameters{share} · **Frozen:** {format_count(frozen)} parameters"


def done_markdown(seconds: float, device: str, extra: str = "") -> str:
    text = f"Done in {seconds:.2f} s on {device}."
    return f"{text} {extra}".strip()


def source_markdown(loaded: LoadedModel) -> str:
    text = f"Model source: `{loaded.source}` ({loaded.location})."
    return f"{text} {loaded.notice}" if loaded.notice else text


@contextmanager
def stopwatch():
    """`with stopwatch() as t: ...; t()` gives elapsed seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


DOWNLOADS = Path(tempfile.gettempdir()) / "adapter-studio"


def download_path(filename: str) -> Path:
    """A fresh per-request path for a file the user can download (no two sessions share one).

    Each request gets its own folder, readable by this process's user only (0700), and folders
    older than the retention time (`STUDIO_RETENTION_MINUTES`) are deleted on the way.
    """
    DOWNLOADS.mkdir(mode=0o700, exist_ok=True)
    delete_expired(DOWNLOADS, settings.retention_seconds())
    folder = DOWNLOADS / uuid.uuid4().hex
    folder.mkdir(mode=0o700)
    return folder / filename


def delete_expired(root: Path, max_age_seconds: float) -> int:
    """Delete the request folders under ``root`` last changed more than ``max_age_seconds`` ago."""
    import shutil

    cutoff = time.time() - max_age_seconds
    removed = 0
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except OSError:  # another request removed it first
            continue
    return removed


def upload_path(file) -> Path:
    """Path of an uploaded file whatever form Gradio hands it in."""
    if file is None:
        raise BadInput("No file was given: upload one or pick an example.")
    if isinstance(file, (str, Path)):
        return Path(file)
    name = getattr(file, "name", None) or (file.get("path") if isinstance(file, dict) else None)
    if not name:
        raise BadInput("The upload could not be read.")
    return Path(name)
