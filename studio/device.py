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
    """Pick a CPU thread count once per process.

    Two torch threads can be much slower than one on a shared 2-core machine, so the default is
    at most the core count and at most 4; `STUDIO_TORCH_THREADS` overrides it.
    """
    global _threads_configured
    wanted = os.environ.get("STUDIO_TORCH_THREADS")
    n = int(wanted) if wanted else max(1, min(os.cpu_count() or 1, 4))
    if not _threads_configured:
        torch.set_num_threads(n)
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
