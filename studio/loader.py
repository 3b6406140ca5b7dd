"""One model loader for every tab, with three sources behind it.

- ``bundled`` (default off a Space): small weights the repo trains itself, kept under
  ``assets/<key>/`` as safetensors + ``config.json`` + ``MODEL_CARD.md``.
- ``hub`` (default on a Space): the paper's real frozen model and adapter weights, by Hugging Face
  id, through ``from_pretrained`` / ``hf_hub_download``.
- ``local``: a directory in hub layout, loaded through the very same code as ``hub``.

Models load lazily on first use, once per process, under a per-model lock so concurrent requests
wait for one load instead of starting several. When the hub cannot be reached the bundled model is
used and the user is told so in plain words.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
SOURCES = ("bundled", "hub", "local")


class ModelSourceError(RuntimeError):
    """A model could not be loaded from any usable source; the message is meant for the user."""


@dataclass(frozen=True)
class ModelSpec:
    """How to build one tab's model from each source.

    ``load_bundled(directory)`` builds from ``assets/<key>``; ``load_hub(repo_or_dir)`` receives a
    Hugging Face id (hub) or a directory in hub layout (local) and must only use
    ``from_pretrained`` / :func:`resolve_file`, so both sources share one code path.
    """

    key: str
    hub_id: str | None = None
    load_bundled: Callable[[Path], Any] | None = None
    load_hub: Callable[[str], Any] | None = None

    @property
    def bundled_dir(self) -> Path:
        return ASSETS / self.key

    def env_name(self, suffix: str) -> str:
        return f"STUDIO_{suffix}_{self.key.upper().replace('-', '_')}"


@dataclass
class LoadedModel:
    value: Any
    source: str  # the source actually in use
    requested: str  # the source that was asked for
    location: str  # a path or a hub id
    notice: str | None = None  # plain-language note for the user (e.g. a fallback)


def requested_source(spec: ModelSpec) -> str:
    """Per-model setting, else the studio-wide one, else hub on a Space and bundled elsewhere."""
    source = (
        os.environ.get(spec.env_name("SOURCE"))
        or os.environ.get("STUDIO_MODEL_SOURCE")
        or ("hub" if os.environ.get("SPACE_ID") else "bundled")
    ).strip().lower()
    if source not in SOURCES:
        raise ModelSourceError(
            f"Unknown model source '{source}' for {spec.key}: choose one of {', '.join(SOURCES)}."
        )
    return source


def local_dir(spec: ModelSpec) -> Path | None:
    explicit = os.environ.get(spec.env_name("LOCAL_DIR"))
    if explicit:
        return Path(explicit)
    root = os.environ.get("STUDIO_LOCAL_ROOT")
    return Path(root) / spec.key if root else None


def hub_id(spec: ModelSpec) -> str | None:
    return os.environ.get(spec.env_name("HUB_ID")) or spec.hub_id


def resolve_file(repo_or_dir: str | os.PathLike, filename: str, **kwargs) -> str:
    """A file of a model repo: from a local directory when given one, else `hf_hub_download`."""
    if os.path.isdir(repo_or_dir):
        path = Path(repo_or_dir) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{filename} is missing from {repo_or_dir}")
        return str(path)
    from huggingface_hub import hf_hub_download

    return hf_hub_download(str(repo_or_dir), filename, **kwargs)


def describe_failure(exc: BaseException) -> str:
    """One line a user can read, without the stack trace."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "offline" in text.lower() or name in {"LocalEntryNotFoundError", "ConnectionError", "OfflineModeIsEnabled"}:
        return "the Hugging Face Hub cannot be reached from this machine"
    if name in {"RepositoryNotFoundError", "GatedRepoError"}:
        return "the repository was not found or is gated"
    return f"{name}: {text[:200]}" if text else name


class ModelCache:
    """Process-wide cache: each model is built once, under its own lock."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def loaded(self, key: str) -> LoadedModel | None:
        return self._models.get(key)

    def get(self, spec: ModelSpec) -> LoadedModel:
        cached = self._models.get(spec.key)
        if cached is not None:
            return cached
        with self._lock_for(spec.key):
            cached = self._models.get(spec.key)
            if cached is None:
                cached = _load(spec)
                self._models[spec.key] = cached
            return cached

    def clear(self, key: str | None = None) -> None:
        with self._guard:
            if key is None:
                self._models.clear()
            else:
                self._models.pop(key, None)


def _load(spec: ModelSpec) -> LoadedModel:
    source = requested_source(spec)
    if source == "local":
        directory = local_dir(spec)
        if directory is None or not directory.is_dir():
            raise ModelSourceError(
                f"Model source 'local' for {spec.key} needs a directory: set "
                f"{spec.env_name('LOCAL_DIR')} or STUDIO_LOCAL_ROOT (got {directory})."
            )
        if spec.load_hub is None:
            raise ModelSourceError(f"{spec.key} has no hub-layout loader.")
        return LoadedModel(spec.load_hub(str(directory)), "local", "local", str(directory))
    if source == "hub":
        repo = hub_id(spec)
        if spec.load_hub is None or repo is None:
            return _bundled(spec, requested="hub", notice=f"{spec.key} has no hub model; using the bundled one.")
        try:
            return LoadedModel(spec.load_hub(repo), "hub", "hub", repo)
        except Exception as exc:  # any hub failure falls back; the trace goes to the log only
            log.warning("hub load of %s (%s) failed; falling back to bundled", spec.key, repo, exc_info=True)
            notice = (
                f"Could not load '{repo}' from the Hugging Face Hub ({describe_failure(exc)}); "
                f"using the bundled model instead."
            )
            return _bundled(spec, requested="hub", notice=notice)
    return _bundled(spec, requested="bundled")


def _bundled(spec: ModelSpec, requested: str, notice: str | None = None) -> LoadedModel:
    if spec.load_bundled is None:
        raise ModelSourceError(f"{spec.key} has no bundled model.")
    directory = spec.bundled_dir
    if not directory.is_dir():
        raise ModelSourceError(
            f"The bundled weights for {spec.key} are missing ({directory}); "
            f"reproduce them with the script named in the README."
        )
    return LoadedModel(spec.load_bundled(directory), "bundled", requested, str(directory), notice)


MODELS = ModelCache()


# --- bundled files -----------------------------------------------------------------------------

def save_bundled(directory: Path, tensors: Mapping[str, Any], config: Mapping[str, Any], name: str = "model") -> None:
    """Write ``<name>.safetensors`` and ``<name>.json`` (config) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_bundled(directory: Path, name: str = "model") -> tuple[dict, dict]:
    from safetensors.torch import load_file

    directory = Path(directory)
    tensors = load_file(str(directory / f"{name}.safetensors"))
    config = json.loads((directory / f"{name}.json").read_text())
    return tensors, config


def count_safetensors_params(path: Path, prefixes: tuple[str, ...] | None = None) -> int:
    """Parameter count from a safetensors header only (no tensor is read), for the About tab."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if prefixes is None or key.startswith(prefixes):
                n = 1
                for dim in handle.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def count_params(module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)
