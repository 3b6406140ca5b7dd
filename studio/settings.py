"""Every `STUDIO_*` environment variable is read here and nowhere else (a test enforces it), and
each is listed in `VARIABLES`, which the README's table is checked against.

Values are read when asked for, not at import, so a test or a launcher can set them late.
"""
from __future__ import annotations

import os

VARIABLES: dict[str, str] = {
    "STUDIO_MODEL_SOURCE": "`bundled`, `hub` or `local` for every tab (default: `hub` on a Space, else `bundled`)",
    "STUDIO_SOURCE_<KEY>": "the same for one tab, e.g. `STUDIO_SOURCE_FGSA=hub`",
    "STUDIO_HUB_<KEY>_<ROLE>": "another Hugging Face id for one part of a tab's hub stack (roles per tab below)",
    "STUDIO_LOCAL_DIR_<KEY>": "the directory in hub layout that the `local` source reads for one tab",
    "STUDIO_LOCAL_ROOT": "a folder holding one such directory per tab key",
    "STUDIO_TABS": "comma-separated tab keys to build (About is always built), e.g. `fgsa,kangaroo`",
    "STUDIO_MAX_LOADED_MODELS": "how many tabs' models stay loaded at once; the least recently used is dropped (default: no limit)",
    "STUDIO_MODEL_CACHE": "where package models are converted once (default `.cache/zoo` in the repo; git-ignored)",
    "STUDIO_TORCH_THREADS": "CPU threads for torch (default 1: faster for the small bundled models on a shared CPU)",
    "STUDIO_FORCE_CPU": "`1` runs on the CPU even where CUDA exists",
    "STUDIO_CHECK_BOUNDARY": "`1` pickles every device call's arguments and result, as ZeroGPU does (on under pytest)",
    "STUDIO_RETENTION_MINUTES": "uploads, downloads and session state older than this are deleted (default 60)",
    "STUDIO_QUEUE_MAX_SIZE": "requests waiting in the queue before new ones are refused (default 64; each client holds at most its own cap of them)",
    "STUDIO_HEAVY_CONCURRENCY": "long model runs (CT denoising, video) at once across all tabs (default 1)",
    "STUDIO_QUICK_CONCURRENCY": "short model runs (token generation, a segmentation) at once, in their own lane beside the long ones (default 1)",
    "STUDIO_MAX_JOBS_PER_CLIENT": "requests one client (a browser session, or one address) may have waiting or running at once (default 3)",
    "STUDIO_MAX_FILE_SIZE": "upload limit (default `64mb`)",
    "STUDIO_SHARE": "`1` asks Gradio for a public share link",
    "STUDIO_STUDY_DB": "where reader-study ratings are stored: a SQLite file path or a SQLAlchemy URL (default `data/studies.sqlite` in the repo; git-ignored)",
}

SOURCES = ("bundled", "hub", "local")


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _key_suffix(key: str) -> str:
    return key.upper().replace("-", "_")


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def model_source(key: str) -> str:
    """Raw requested source for a tab: per-tab, else studio-wide, else hub on a Space, else bundled."""
    return (_get(f"STUDIO_SOURCE_{_key_suffix(key)}") or _get("STUDIO_MODEL_SOURCE")
            or ("hub" if on_space() else "bundled")).lower()


def set_model_source(source: str) -> None:
    """`python app.py --source ...`: the studio-wide source for this process."""
    os.environ["STUDIO_MODEL_SOURCE"] = source


def hub_override(key: str, role: str) -> str | None:
    return _get(f"STUDIO_HUB_{_key_suffix(key)}_{role.upper()}")


def hub_override_name(key: str, role: str) -> str:
    return f"STUDIO_HUB_{_key_suffix(key)}_{role.upper()}"


def local_dir(key: str) -> str | None:
    explicit = _get(f"STUDIO_LOCAL_DIR_{_key_suffix(key)}")
    if explicit:
        return explicit
    root = _get("STUDIO_LOCAL_ROOT")
    return os.path.join(root, key) if root else None


def local_dir_name(key: str) -> str:
    return f"STUDIO_LOCAL_DIR_{_key_suffix(key)}"


def selected_tabs() -> list[str] | None:
    value = _get("STUDIO_TABS")
    return [k.strip() for k in value.split(",") if k.strip()] if value else None


def max_loaded_models() -> int | None:
    value = _get("STUDIO_MAX_LOADED_MODELS")
    return max(1, int(value)) if value else None


def model_cache() -> str | None:
    return _get("STUDIO_MODEL_CACHE")


def retention_seconds() -> int:
    """How long an upload, a file made for download or a session's state is kept."""
    value = _get("STUDIO_RETENTION_MINUTES")
    return max(60, int(float(value) * 60)) if value else 3600


def torch_threads() -> int:
    value = _get("STUDIO_TORCH_THREADS")
    return max(1, int(value)) if value else 1


def force_cpu() -> bool:
    return _get("STUDIO_FORCE_CPU") == "1"


def check_boundary() -> bool:
    return _get("STUDIO_CHECK_BOUNDARY") == "1"


def study_db() -> str | None:
    return _get("STUDIO_STUDY_DB")


def share() -> bool:
    return _get("STUDIO_SHARE") == "1"


QUEUE_MAX_SIZE = int(_get("STUDIO_QUEUE_MAX_SIZE") or "64")
MAX_FILE_SIZE = _get("STUDIO_MAX_FILE_SIZE") or "64mb"
# Heavy model work shares one concurrency slot so a long request cannot starve the CPU of others;
# light re-renders (a slider moved after a run) get their own slots.
HEAVY = "heavy"
HEAVY_CONCURRENCY = int(_get("STUDIO_HEAVY_CONCURRENCY") or "1")
# Short model runs have a lane of their own, so a token generation never waits behind minutes of
# CT denoising or video: the two lanes run side by side (one torch thread each).
QUICK = "quick"
QUICK_CONCURRENCY = int(_get("STUDIO_QUICK_CONCURRENCY") or "1")
MAX_JOBS_PER_CLIENT = max(1, int(_get("STUDIO_MAX_JOBS_PER_CLIENT") or "3"))
LIGHT_CONCURRENCY = 4
# Images that carry measurements travel as PNG: Gradio's default WebP is lossy.
IMAGE_FORMAT = "png"

CSS = """
.studio-params {font-size: 0.9em; opacity: 0.9}
.studio-real {font-size: 0.85em; opacity: 0.85}
.studio-status {min-height: 1.5em}
footer {display: none !important}
"""


def max_body_bytes() -> int:
    """Largest request body accepted: the upload limit plus room for a multipart envelope. It
    covers inline base64 `data:` payloads in JSON bodies, which the upload limit alone does not."""
    text = MAX_FILE_SIZE.lower().strip()
    units = {"tb": 2**40, "gb": 2**30, "mb": 2**20, "kb": 2**10, "b": 1}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * factor) + 2**20
    return int(text) + 2**20


def launch_kwargs() -> dict:
    """Options for `demo.launch`; run_history is off because users upload medical images."""
    return dict(max_file_size=MAX_FILE_SIZE, run_history=False, css=CSS, show_error=True)
