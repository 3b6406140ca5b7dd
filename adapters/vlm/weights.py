"""The projector's file: safetensors weights with its `ProjectorConfig` in the header metadata."""
from __future__ import annotations

import json
from pathlib import Path

from adapters.common.weights import read_header, save_with_header
from adapters.vlm.modeling import Projector, ProjectorConfig

PROJECTOR_FILE = "vlm_projector.safetensors"


def save_projector(projector: Projector, path: str | Path, extra: dict[str, str] | None = None) -> None:
    save_with_header(path, projector.state_dict(), {"config": json.dumps(projector.config.to_dict())} | dict(extra or {}))


def projector_config(path: str | Path) -> ProjectorConfig:
    return ProjectorConfig(**json.loads(read_header(path)["config"]))


def load_projector(path: str | Path) -> Projector:
    from safetensors.torch import load_file

    projector = Projector(projector_config(path))
    projector.load_state_dict(load_file(str(path)))
    return projector.eval().requires_grad_(False)
