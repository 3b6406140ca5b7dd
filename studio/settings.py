"""App-wide settings: queue, upload limits, launch options. Every test that launches the app uses
`launch_kwargs()` so it runs with the same options as `python app.py`."""
from __future__ import annotations

import os

QUEUE_MAX_SIZE = int(os.environ.get("STUDIO_QUEUE_MAX_SIZE", "32"))
MAX_FILE_SIZE = os.environ.get("STUDIO_MAX_FILE_SIZE", "64mb")
# Heavy model work shares one concurrency slot so a long request cannot starve the CPU of others;
# light re-renders (a slider moved after a run) get their own slots.
HEAVY = "heavy"
HEAVY_CONCURRENCY = int(os.environ.get("STUDIO_HEAVY_CONCURRENCY", "1"))
LIGHT_CONCURRENCY = 4
# Images that carry measurements travel as PNG: Gradio's default WebP is lossy.
IMAGE_FORMAT = "png"

CSS = """
.studio-params {font-size: 0.9em; opacity: 0.9}
.studio-status {min-height: 1.5em}
footer {display: none !important}
"""


def launch_kwargs() -> dict:
    """Options for `demo.launch`; run_history is off because users upload medical images."""
    return dict(max_file_size=MAX_FILE_SIZE, run_history=False, css=CSS, show_error=True)
