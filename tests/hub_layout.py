"""Lay out a directory as a Hugging Face hub cache, so the real `hf_hub_download` /
`from_pretrained` code path can be exercised offline (HF_HUB_OFFLINE=1, HF_HUB_CACHE=...)."""
from __future__ import annotations

import shutil
from pathlib import Path

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def install_in_hub_cache(cache: Path, repo_id: str, files_dir: Path) -> Path:
    """Copy every file of `files_dir` into `cache` as snapshot `FAKE_COMMIT` of `repo_id`."""
    repo_folder = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_folder / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_folder / "refs").mkdir(exist_ok=True)
    (repo_folder / "refs" / "main").write_text(FAKE_COMMIT)
    for path in Path(files_dir).rglob("*"):
        if path.is_file():
            target = snapshot / path.relative_to(files_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return snapshot
