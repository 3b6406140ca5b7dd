"""Device handling shared by every tab.

On a ZeroGPU Space CUDA exists only inside functions decorated with `spaces.GPU`, which run in a
forked worker; everywhere else `spaces.GPU` returns the function unchanged. So tabs decorate their
heavy functions with `gpu(...)` and ask for `compute_device()` only inside them.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

try:  # `spaces` must be imported before torch on ZeroGPU; it is optional off a Space.
    import spaces
except ImportError:  # pragma: no cover - spaces is in requirements.txt
    spaces = None

import torch

_threads_configured = False


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def configure_threads() -> int:
    """Pick the CPU thread count once per process.

    The bundled models are tiny: their ops are too small to gain from intra-op threads, and on a
    shared 2-core machine two torch threads measured several times slower than one (Filter2Noise
    training 1.54 s vs 0.33 s per iteration; the I2V sampler likewise). So the default is one
    thread; `STUDIO_TORCH_THREADS` raises it (e.g. for the hub models on a dedicated CPU box).
    """
    global _threads_configured
    if not _threads_configured:
        wanted = os.environ.get("STUDIO_TORCH_THREADS")
        torch.set_num_threads(max(1, int(wanted)) if wanted else 1)
        _threads_configured = True
    return torch.get_num_threads()


def compute_device() -> torch.device:
    """CUDA when present, CPU otherwise. Call it inside a `gpu`-decorated function only."""
    if os.environ.get("STUDIO_FORCE_CPU") != "1" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return f"CPU ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''})"


def gpu(duration: int | Callable[..., int] = 60):
    """Decorate GPU work: `spaces.GPU(duration=...)` on ZeroGPU, the function itself elsewhere.

    `duration` may be a function of the call's arguments (ZeroGPU calls it with the same
    arguments) so long requests reserve more time than short ones.
    """

    def decorate(fn):
        if spaces is None:
            return fn
        wrapped = spaces.GPU(duration=duration)(fn)
        return functools.wraps(fn)(wrapped) if wrapped is not fn else fn

    return decorate
