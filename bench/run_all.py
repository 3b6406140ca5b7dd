"""Every tab's benchmark in one run, printed as one table of figures and ratios.

    python -m bench.run_all            # full benchmarks
    python -m bench.run_all --quick    # smaller inputs, for a smoke run

The first rows are cold start: seconds from `python app.py` to the first HTTP 200, against a bare
Gradio app measured in the same run (the ratio says what the studio adds on top of Gradio itself).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BARE_APP = "import gradio as gr\nwith gr.Blocks() as demo:\n    gr.Markdown('bare')\ndemo.launch(server_port=int(__import__('sys').argv[1]))\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds_to_first_200(argv: list[str], port: int, timeout: float = 120.0) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, STUDIO_MODEL_SOURCE="bundled"))
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"no HTTP 200 within {timeout} s")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def cold_start_rows() -> list[dict]:
    port = _free_port()
    studio = seconds_to_first_200([sys.executable, "app.py", "--port", str(port)], port)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(BARE_APP)
    port = _free_port()
    bare = seconds_to_first_200([sys.executable, handle.name, str(port)], port)
    os.unlink(handle.name)
    return [
        {"tab": "studio", "case": "python app.py", "metric": "cold start to first HTTP 200 (s)", "value": studio,
         "baseline": "bare gr.Blocks app", "ratio": studio / bare, "note": f"goal < 10 s; bare Gradio {bare:.1f} s"},
    ]


def tab_bench_modules() -> list[str]:
    import tabs

    names = []
    for module in tabs.registered_tabs():
        name = f"bench.{module.INFO.key}"
        if importlib.util.find_spec(name) is not None:
            names.append(name)
    return names


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict]) -> None:
    headers = ["tab", "case", "metric", "value", "baseline", "ratio", "note"]
    cells = [[format_value(row.get(h)) if row.get(h) is not None else "" for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-+-".join("-" * w for w in widths))
    for c in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(c, widths)))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    parser.add_argument("--only", nargs="*", help="tab keys to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    if not args.only or "studio" in args.only:
        rows += cold_start_rows()
    for name in tab_bench_modules():
        if args.only and name.split(".")[-1] not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).run(quick=args.quick)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
