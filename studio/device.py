"""The one boundary between the web process and device work.

On a ZeroGPU Space CUDA exists only inside functions decorated with `spaces.GPU`, which run in a
forked worker: their arguments and results are pickled on the way in and out. So exactly one
function crosses that boundary, `run_paper(key, entry, request)`: it loads the paper's model inside
the worker and calls ``adapters.<key>.inference.<entry>(bundle, request, device=..., progress=...)``.
Only plain data may cross (numbers, strings, numpy arrays, frozen dataclasses, tuples/lists/dicts
of those): `check_plain` enforces it on every call, and with ``STUDIO_CHECK_BOUNDARY=1`` (always
under pytest) the arguments and result really are pickled, as on ZeroGPU.

Progress is not passed in as a callable (it could not be pickled): the handler opens
`progress_to(callback)` in the web process and the inference code reports through the
``progress`` function it is given, which forwards to that callback when one is open in this
thread's context. In a ZeroGPU worker none is, so there the bar only marks the start and the end
of the device call.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import importlib
import pickle
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable

try:  # `spaces` must be imported before torch on ZeroGPU; it is optional off a Space.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import numpy as np
import torch

from studio import settings

_threads_configured = False
_progress: contextvars.ContextVar[Callable[[float, str], None] | None] = contextvars.ContextVar(
    "studio_progress", default=None)
_calls = threading.local()

PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes, np.generic)


class BoundaryError(TypeError):
    """Something that is not plain data was about to cross the device boundary (a programming error)."""


def on_space() -> bool:
    return settings.on_space()


def configure_threads() -> int:
    """Pick the CPU thread count once per process.

    The bundled models are small: their ops are too small to gain from intra-op threads, and on a
    shared 2-core machine two torch threads measured several times slower than one (Filter2Noise
    training 1.54 s vs 0.33 s per iteration; the I2V sampler likewise). So the default is one
    thread; `STUDIO_TORCH_THREADS` raises it.
    """
    global _threads_configured
    if not _threads_configured:
        torch.set_num_threads(settings.torch_threads())
        _threads_configured = True
    return torch.get_num_threads()


def compute_device() -> torch.device:
    """CUDA when present, CPU otherwise. Call it inside device work only."""
    if not settings.force_cpu() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def check_plain(value: Any, where: str = "value", _depth: int = 0) -> None:
    """Raise `BoundaryError` unless ``value`` is plain data that pickles without code or state."""
    if _depth > 32:
        raise BoundaryError(f"{where}: nested too deeply")
    if isinstance(value, PLAIN_SCALARS):
        return
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise BoundaryError(f"{where}: numpy object arrays may hold anything; use a typed array")
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]", _depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            check_plain(k, f"{where} key", _depth + 1)
            check_plain(item, f"{where}[{k!r}]", _depth + 1)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not type(value).__dataclass_params__.frozen:
            raise BoundaryError(f"{where}: {type(value).__name__} must be a frozen dataclass to cross the device boundary")
        for f in dataclasses.fields(value):
            check_plain(getattr(value, f.name), f"{where}.{f.name}", _depth + 1)
        return
    raise BoundaryError(f"{where}: {type(value).__name__} cannot cross the device boundary "
                        f"(plain data only: numbers, strings, numpy arrays, frozen dataclasses)")


def _roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def device_call(duration: int | Callable[..., int] = 60):
    """Decorate device work: `spaces.GPU(duration=...)` on ZeroGPU, the function itself elsewhere,
    with the plain-data check on arguments and result, and real pickling when checking is on."""

    def decorate(fn):
        target = spaces.GPU(duration=duration)(fn) if spaces is not None else fn

        @functools.wraps(fn)
        def call(*args, **kwargs):
            check_plain((args, kwargs), f"{fn.__name__} arguments")
            pickled = settings.check_boundary()
            if pickled:
                args, kwargs = _roundtrip((args, kwargs))
            result = target(*args, **kwargs)
            check_plain(result, f"{fn.__name__} result")
            record = getattr(_calls, "log", None)
            if record is not None:
                record.append((fn.__name__, args, kwargs, pickled))
            return _roundtrip(result) if pickled else result

        return call

    return decorate


@contextmanager
def recording_calls():
    """Yields the list of device calls made in this thread meanwhile (tests count them)."""
    previous = getattr(_calls, "log", None)
    _calls.log = []
    try:
        yield _calls.log
    finally:
        _calls.log = previous


@contextmanager
def progress_to(callback: Callable[[float, str], None] | None):
    """Forward the device work's progress reports to ``callback`` (a `gr.Progress`, say) while open."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def report_progress(fraction: float, desc: str = "") -> None:
    """What inference code is given as ``progress``: forwards to the open callback, if any."""
    callback = _progress.get()
    if callback is not None:
        callback(min(1.0, max(0.0, float(fraction))), desc)


def _inference(key: str):
    return importlib.import_module(f"adapters.{key}.inference")


def _gpu_seconds(key: str, entry: str, request: Any) -> int:
    estimate = getattr(_inference(key), "gpu_seconds", None)
    return int(estimate(entry, request)) if estimate else 60


@dataclasses.dataclass(frozen=True)
class DeviceRun:
    result: Any
    device: str  # e.g. "CPU (1 thread)" or "GPU (NVIDIA H200)"
    seconds: float  # time inside the device call, model load included


@device_call(duration=_gpu_seconds)
def run_paper(key: str, entry: str, request: Any) -> DeviceRun:
    """The device work of every tab: ``adapters.<key>.inference.<entry>`` on the loaded model."""
    from studio.loader import MODELS
    from studio.registry import paper_spec

    start = time.perf_counter()
    bundle = MODELS.get(paper_spec(key)).value
    device = compute_device()
    result = getattr(_inference(key), entry)(bundle, request, device=device, progress=report_progress)
    return DeviceRun(result, device_label(device), time.perf_counter() - start)
