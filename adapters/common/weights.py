"""Bundled weight files (safetensors + a JSON config beside them), header-only parameter counts,
and one way to find a file of a model repo whether it is a hub id or a directory in hub layout."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

# BatchNorm statistics are stored with the weights but are not parameters.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def save_bundled(directory: str | os.PathLike, tensors: Mapping[str, Any], config: Mapping[str, Any],
                 name: str = "model") -> None:
    """Write ``<name>.safetensors`` and ``<name>.json`` (its config) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_with_header(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> None:
    """One safetensors file with string ``metadata`` in its header, written to a temporary name and
    renamed, so a reader never sees half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    tmp.replace(path)


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors file ({} when it has none), without reading tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def read_bundled(directory: str | os.PathLike, name: str = "model") -> tuple[dict, dict]:
    """The tensors and config written by `save_bundled`."""
    from safetensors.torch import load_file

    directory = Path(directory)
    tensors = load_file(str(directory / f"{name}.safetensors"))
    config = json.loads((directory / f"{name}.json").read_text())
    return tensors, config


class WeightMismatch(ValueError):
    """A weight file does not fit the model it is loaded into; the message names the file's role
    (never a path), so it can be shown to the user as it is."""


def load_strict(module: Any, tensors: Mapping[str, Any], role: str, ignore: tuple[str, ...] = ()) -> Any:
    """``module.load_state_dict(tensors)`` where every key must match (shapes too): a mismatch is a
    `WeightMismatch` naming ``role``, never a partly random model. Keys starting with one of
    ``ignore`` may be absent or extra on either side (buffers that differ across library versions)."""
    own = set(module.state_dict())
    given = set(tensors)
    missing = sorted(k for k in own - given if not k.startswith(ignore)) if ignore else sorted(own - given)
    unexpected = sorted(k for k in given - own if not k.startswith(ignore)) if ignore else sorted(given - own)
    if missing or unexpected:
        raise WeightMismatch(f"The {role} weights do not match the model ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected, e.g. {(missing + unexpected)[:3]}).")
    wanted = {k: v for k, v in tensors.items() if k in own}
    try:
        module.load_state_dict(wanted, strict=not ignore)
    except RuntimeError as exc:  # shapes differ
        first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else "shape mismatch"
        raise WeightMismatch(f"The {role} weights do not match the model ({first[:160]}).") from None
    return module


def count_safetensors_params(path: str | os.PathLike, prefixes: tuple[str, ...] | None = None,
                             parameters_only: bool = False) -> int:
    """Element count from a safetensors header alone (no tensor is read).

    ``prefixes`` keeps only keys starting with one of them; ``parameters_only`` leaves out
    BatchNorm statistics, which are stored but never trained.
    """
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if prefixes is not None and not key.startswith(prefixes):
                continue
            if parameters_only and key.endswith(BUFFER_SUFFIXES):
                continue
            n = 1
            for dim in handle.get_slice(key).get_shape():
                n *= dim
            total += n
    return total


def count_params(modules: Any, trainable: bool | None = None) -> int:
    """Parameters of one module or several (each counted once), optionally only (non-)trainable ones."""
    if hasattr(modules, "parameters"):
        modules = [modules]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for p in module.parameters():
            if id(p) in seen or (trainable is not None and p.requires_grad != trainable):
                continue
            seen.add(id(p))
            total += p.numel()
    return total


def named_tensors(module: Any, names: Iterable[str] | None = None) -> dict:
    """Detached copies of a module's parameters, for before/after comparisons."""
    wanted = set(names) if names is not None else None
    return {n: p.detach().clone() for n, p in module.named_parameters() if wanted is None or n in wanted}


def resolve_file(repo_or_dir: str | os.PathLike, filename: str, **kwargs) -> str:
    """A file of a model repo: from a local directory when given one, else `hf_hub_download`."""
    if os.path.isdir(repo_or_dir):
        path = Path(repo_or_dir) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{filename} is missing from the model directory")
        return str(path)
    from huggingface_hub import hf_hub_download

    return hf_hub_download(str(repo_or_dir), filename, **kwargs)
