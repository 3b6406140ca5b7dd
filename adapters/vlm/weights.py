"""The projector's file: safetensors weights with its `ProjectorConfig` in the header metadata."""
from __future__ import annotations

import json
from pathlib import Path

from adapters.vlm.modeling import Projector, ProjectorConfig

PROJECTOR_FILE = "vlm_projector.safetensors"


def save_projector(projector: Projector, path: str | Path, extra: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(projector.config.to_dict())} | dict(extra or {})
    state = {k: v.detach().contiguous() for k, v in projector.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def projector_config(path: str | Path) -> ProjectorConfig:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return ProjectorConfig(**json.loads(meta["config"]))


def load_projector(path: str | Path) -> Projector:
    from safetensors.torch import load_file

    projector = Projector(projector_config(path))
    projector.load_state_dict(load_file(str(path)))
    return projector.eval().requires_grad_(False)
