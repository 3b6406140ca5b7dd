"""Adapter Studio: one Gradio app, one tab per paper. `python app.py` serves it; `demo` is importable
(tests, Hugging Face Spaces)."""
from __future__ import annotations

import argparse
import logging
import os

import gradio as gr

from studio import guard, settings
from studio.device import configure_threads  # imports `spaces` before torch, as ZeroGPU requires
from tabs import registered_tabs


def build_demo() -> gr.Blocks:
    configure_threads()
    retention = settings.retention_seconds()
    # Gradio's own cache (uploads and the copies of results it serves) is emptied on the same schedule
    with gr.Blocks(title="Adapter Studio", delete_cache=(max(60, retention // 4), retention)) as demo:
        for tab in registered_tabs():
            info = tab.INFO
            with gr.Tab(info.title, id=info.key, elem_id=f"tab-{info.key}"):
                paper = info.paper
                if paper is not None:
                    cite = f"*[{paper.paper}]({paper.paper_url})*" if paper.paper_url else f"*{paper.paper}*"
                    gr.Markdown(f"## {info.title}\n{cite}\n\n{info.description}")
                tab.build()
    demo.queue(max_size=settings.QUEUE_MAX_SIZE, default_concurrency_limit=settings.LIGHT_CONCURRENCY)
    guard.cap_jobs_per_client(demo._queue, settings.MAX_JOBS_PER_CLIENT, trust_forwarded=settings.on_space(),
                              lanes=(settings.HEAVY, settings.QUICK))
    return demo


demo = build_demo()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=settings.share())
    parser.add_argument("--source", choices=settings.SOURCES, help="model source for every tab")
    args = parser.parse_args(argv)
    if args.source:
        settings.set_model_source(args.source)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                app_kwargs=guard.app_kwargs(demo, settings.max_body_bytes()), **settings.launch_kwargs())


if __name__ == "__main__":
    main()
