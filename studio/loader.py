"""One model loader for every tab, with three sources behind it.

- ``bundled`` (default off a Space): weights this repo trains itself, in ``assets/<key>/``.
- ``hub`` (default on a Space): the paper's real stack by Hugging Face id, part by part (frozen
  model, adapter, extras: `adapters.common.contract.HubPart`). If any part has nothing published
  the hub source is unavailable for that paper and nothing at all is downloaded.
- ``local``: a directory in hub layout, loaded through the very same code as ``hub``.

The paper's ``adapters/<key>/loading.py`` builds the model (``load_bundled(directory)``,
``load_hub(parts)``). Models load lazily on first use, once per process, under a per-model lock;
``STUDIO_MAX_LOADED_MODELS`` bounds how many stay loaded (least recently used dropped first).
When the hub cannot be used the bundled model is used and the user is told why in plain words.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from adapters.common.contract import PaperSpec
from studio import settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
SOURCES = settings.SOURCES


class ModelSourceError(RuntimeError):
    """A model could not be loaded from any usable source; the message is meant for the user."""


@dataclass
class LoadedModel:
    value: Any
    source: str  # the source actually in use
    requested: str  # the source that was asked for
    location: str  # "assets/<key>" or the hub ids / local directory, never an absolute server path
    notice: str | None = None  # plain-language note for the user (e.g. a fallback)


def loading_module(spec: PaperSpec) -> ModuleType:
    return importlib.import_module(f"adapters.{spec.key}.loading")


def bundled_dir(spec: PaperSpec) -> Path:
    return ASSETS / spec.key


def requested_source(spec: PaperSpec) -> str:
    source = settings.model_source(spec.key)
    if source not in SOURCES:
        raise ModelSourceError(f"Unknown model source '{source}' for {spec.key}: choose one of {', '.join(SOURCES)}.")
    return source


def _part_source(spec: PaperSpec, part, default: str | None) -> str | None:
    override = settings.hub_override(spec.key, part.role)
    if override:
        return override
    return str(bundled_dir(spec)) if part.bundled else default


def hub_parts(spec: PaperSpec) -> dict[str, str | None]:
    """Role -> Hugging Face id, or this repository's assets directory for a part it ships itself
    (environment overrides applied); None where nothing is published."""
    return {part.role: _part_source(spec, part, part.repo) for part in spec.hub}


def hub_unavailable(spec: PaperSpec) -> str | None:
    """Why the hub source cannot serve this paper (decided before any download), or None."""
    if not spec.hub:
        return None
    repos = hub_parts(spec)
    for part in spec.hub:
        if repos[part.role] is None:
            why = f" ({part.unpublished})" if part.unpublished else ""
            return (f"no {part.what} is published on the Hugging Face Hub{why}; "
                    f"{settings.hub_override_name(spec.key, part.role)} can name a repository that has one")
    return None


def local_parts(spec: PaperSpec, directory: str | os.PathLike) -> dict[str, str]:
    return {part.role: _part_source(spec, part, str(Path(directory) / part.local_subdir) if part.local_subdir
                                    else str(directory)) for part in spec.hub}


def _where(parts: dict[str, str]) -> str:
    """The parts in words for the user: hub ids as they are, this repository's files as assets/<key>."""
    return ", ".join(f"assets/{Path(v).name}" if Path(v).is_absolute() and Path(v).parent == ASSETS else v
                     for v in parts.values())


def describe_failure(exc: BaseException) -> str:
    """One line a user can read, without the stack trace or a server path. Libraries wrap hub errors
    (diffusers raises a bare OSError around the hub's own), so the whole cause chain is read."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for item in chain:
        name = type(item).__name__
        text = str(item).strip().lower()
        if ("offline" in text or "couldn't connect" in text or "could not connect" in text
                or name in {"LocalEntryNotFoundError", "ConnectionError", "OfflineModeIsEnabled"}):
            return "the Hugging Face Hub cannot be reached from this machine"
        if name in {"RepositoryNotFoundError", "GatedRepoError"}:
            return "the repository was not found or is gated"
    for item in chain:
        if type(item).__name__ in {"EntryNotFoundError", "FileNotFoundError"}:
            return "a file the model needs is missing from the repository"
    for item in chain:
        if type(item).__name__ == "WeightMismatch":  # its message names the file's role, never a path
            return str(item).rstrip(".")
        if type(item).__name__ == "SafetensorError" or "header" in str(item).lower():
            return "a weight file is damaged or incomplete"
    if isinstance(chain[0], OSError):
        return "a file the model needs is missing or unreadable"
    return type(chain[0]).__name__


def _configure_zoo() -> None:
    cache = settings.model_cache()
    if cache:
        from adapters import zoo

        zoo.set_cache_dir(cache)


def _load(spec: PaperSpec) -> LoadedModel:
    _configure_zoo()
    source = requested_source(spec)
    if not spec.hub:  # nothing pretrained: every source is the same model
        return _bundled(spec, requested=source)
    if source == "local":
        directory = settings.local_dir(spec.key)
        if directory is None or not Path(directory).is_dir():
            raise ModelSourceError(
                f"Model source 'local' for {spec.key} needs a directory in hub layout: set "
                f"{settings.local_dir_name(spec.key)} or STUDIO_LOCAL_ROOT.")
        if not any(Path(directory).iterdir()):
            raise ModelSourceError(
                f"The local model directory for {spec.key} ({settings.local_dir_name(spec.key)}) is empty: "
                f"put the model there in hub layout, or choose another source.")
        try:
            value = loading_module(spec).load_hub(local_parts(spec, directory))
        except Exception as exc:
            log.warning("local load of %s failed", spec.key, exc_info=True)
            raise ModelSourceError(
                f"The local model directory for {spec.key} could not be loaded ({describe_failure(exc)}).") from None
        return LoadedModel(value, "local", "local", f"local directory ({settings.local_dir_name(spec.key)})")
    if source == "hub":
        reason = hub_unavailable(spec)
        if reason:
            return _bundled(spec, requested="hub", notice=f"The hub source is unavailable for this tab: {reason}. "
                                                          f"Using the bundled model.")
        parts = hub_parts(spec)
        try:
            value = loading_module(spec).load_hub(parts)
        except Exception as exc:  # any hub failure falls back; the trace goes to the log only
            log.warning("hub load of %s (%s) failed; falling back to bundled", spec.key, parts, exc_info=True)
            notice = (f"Could not load {_where(parts)} from the Hugging Face Hub "
                      f"({describe_failure(exc)}); using the bundled model instead.")
            return _bundled(spec, requested="hub", notice=notice)
        return LoadedModel(value, "hub", "hub", _where(parts))
    return _bundled(spec, requested="bundled")


def _bundled(spec: PaperSpec, requested: str, notice: str | None = None) -> LoadedModel:
    directory = bundled_dir(spec)
    if not directory.is_dir():
        raise ModelSourceError(f"The bundled weights for {spec.key} are missing; reproduce them with "
                               f"the script under training/{spec.key}/.")
    try:
        value = loading_module(spec).load_bundled(directory)
    except Exception as exc:
        log.exception("bundled load of %s failed", spec.key)
        raise ModelSourceError(f"The bundled weights for {spec.key} could not be loaded ({describe_failure(exc)}); "
                               f"reproduce them with the script under training/{spec.key}/.") from None
    return LoadedModel(value, "bundled", requested, f"assets/{spec.key}", notice)


class ModelCache:
    """Process-wide cache: each model is built once, under its own lock; optionally bounded (LRU)."""

    def __init__(self, max_loaded: int | None = None) -> None:
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._max_loaded = max_loaded

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def loaded(self, key: str) -> LoadedModel | None:
        return self._models.get(key)

    def get(self, spec: PaperSpec) -> LoadedModel:
        cached = self._touch(spec.key)
        if cached is not None:
            return cached
        with self._lock_for(spec.key):
            cached = self._touch(spec.key)
            if cached is None:
                cached = _load(spec)
                with self._guard:
                    self._models[spec.key] = cached
                    self._evict(keep=spec.key)
            return cached

    def _touch(self, key: str) -> LoadedModel | None:
        with self._guard:
            cached = self._models.get(key)
            if cached is not None:
                self._models.move_to_end(key)
            return cached

    def _evict(self, keep: str) -> None:
        limit = self._max_loaded if self._max_loaded is not None else settings.max_loaded_models()
        while limit is not None and len(self._models) > limit:
            oldest = next(k for k in self._models if k != keep)
            log.info("dropping %s from memory (STUDIO_MAX_LOADED_MODELS=%s)", oldest, limit)
            del self._models[oldest]

    def clear(self, key: str | None = None) -> None:
        with self._guard:
            if key is None:
                self._models.clear()
            else:
                self._models.pop(key, None)


MODELS = ModelCache()


def param_counts(spec: PaperSpec) -> tuple[int, int]:
    """(adapter, frozen) of the model in use when loaded, else from the bundled files' headers
    (never loads a model just to count)."""
    loaded = MODELS.loaded(spec.key)
    if loaded is not None:
        return loaded.value.param_counts()
    try:
        return loading_module(spec).header_param_counts(bundled_dir(spec))
    except Exception:  # weights missing or damaged: the tab still builds, the load says what is wrong
        log.warning("parameter counts of %s unavailable", spec.key, exc_info=True)
        return 0, 0


def source_status(spec: PaperSpec) -> str:
    """The model source in words, for the About tab (no server paths)."""
    try:
        requested = requested_source(spec)
    except ModelSourceError as exc:
        return str(exc)
    loaded = MODELS.loaded(spec.key)
    if not spec.hub:
        return "bundled (nothing pretrained: the same on every source)"
    if loaded is not None:
        text = f"{loaded.source} ({loaded.location})"
        return text + (f"; asked for {loaded.requested}: {loaded.notice}" if loaded.notice else "")
    reason = hub_unavailable(spec)
    text = f"{requested} (not loaded yet)"
    if reason:
        text += f"; hub unavailable: {reason}"
    return text
