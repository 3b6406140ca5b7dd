"""Head-of-line latency of the studio's fair sharing, measured in one run against a real server.

    python -m bench.sharing                # prints the table, writes bench/sharing.json
    python -m bench.sharing --ct-iterations 300 --burst 20   # a shorter run

Scenarios (the ones a reliability probe used against the studio before it had lanes and a cap):

1. idle: an 8-token Kangaroo request with nothing else running (the reference);
2. behind CT: the same request from another session while the longest CT job runs (Filter2Noise
   at its maximum iterations on the 256² phantom example); the goal is under 5 s;
3. one client holding many long jobs: it submits many CT runs (refused beyond its cap) while a
   second client asks for 4 tokens;
4. a burst: many clients at once ask for one token each (how many are refused, how long they wait).

The server runs with one torch thread; it is stopped at the end (so is any CT job still running).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run_all import _free_port  # noqa: E402

PROMPT = "The capital of France is"
OUT = REPO / "bench" / "sharing.json"


def _kangaroo(client, tokens: int) -> float:
    start = time.perf_counter()
    client.predict(PROMPT, tokens, 2, 0.5, 6, False, api_name="/kangaroo_generate")
    return time.perf_counter() - start


def _client(url: str, address: str):
    """A gradio_client session seen as coming from ``address`` (the server is on loopback, so it
    reads the forwarded address as a proxy's client would be read)."""
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address})


def _ct_row(iterations: int, example: int = 1) -> list:
    """A CT tab example row (the phantom 256² by default) with the iterations replaced."""
    import tabs.filter2noise as ct

    row = list(ct.EXAMPLES[example])
    row[6] = iterations
    return row


def _files(row: list) -> list:
    from gradio_client import handle_file

    return [handle_file(v) if isinstance(v, str) and Path(v).is_file() else v for v in row]


def _raw_joins(url: str, api_name: str, row: list, count: int, session: str, address: str) -> list[tuple[int, str]]:
    """``count`` queue joins of one session over plain HTTP (files uploaded once): (status, detail)."""
    import httpx

    config = httpx.get(url + "config", timeout=30).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    data = []
    for value in row:
        if isinstance(value, str) and Path(value).is_file():
            with open(value, "rb") as handle:
                path = httpx.post(url + "gradio_api/upload", files={"files": (Path(value).name, handle.read())},
                                  timeout=60).json()[0]
            value = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(value).name}
        data.append(value)
    answers = []
    for _ in range(count):
        answer = httpx.post(url + "gradio_api/queue/join", headers={"X-Forwarded-For": address}, timeout=30,
                            json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
        answers.append((answer.status_code, answer.json().get("detail", "") if answer.status_code != 200 else ""))
    return answers


def start_server(port: int) -> subprocess.Popen:
    from tests.conftest import wait_for_http

    env = dict(os.environ, STUDIO_MODEL_SOURCE="bundled", STUDIO_TABS="filter2noise,kangaroo", STUDIO_TORCH_THREADS="1",
               PYTHONUNBUFFERED="1")
    log = open(Path(tempfile.gettempdir()) / f"sharing-server-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{port}/", timeout=180, proc=proc)
    return proc


def measure(url: str, ct_iterations: int, burst: int, holder_jobs: int, runs: int = 5) -> dict:
    from adapters.common.figures import cpu_description
    from studio import settings

    results: dict = {"settings": {"ct_iterations": ct_iterations, "burst": burst, "holder_jobs": holder_jobs,
                                  "max_jobs_per_client": settings.MAX_JOBS_PER_CLIENT,
                                  "queue_max_size": settings.QUEUE_MAX_SIZE, "torch_threads": 1,
                                  "load_average_at_start": os.getloadavg()[0],
                                  "cpu": f"{cpu_description()}, {os.cpu_count()} cores"}}
    user = _client(url, "10.1.0.1")
    _kangaroo(user, 8)  # loads the model once
    results["idle_8_tokens_s"] = [round(_kangaroo(user, 8), 3) for _ in range(runs)]

    ct_client = _client(url, "10.1.0.2")
    ct_job = ct_client.submit(*_files(_ct_row(ct_iterations)), api_name="/filter2noise_denoise")
    time.sleep(4.0)  # let it start training
    results["behind_ct_8_tokens_s"] = [round(_kangaroo(user, 8), 3) for _ in range(runs)]
    results["ct_still_running_after"] = not ct_job.done()

    answers = _raw_joins(url, "filter2noise_denoise", _ct_row(100, example=0), holder_jobs, "holder", "10.1.0.3")
    results["holder"] = {"submitted": holder_jobs, "accepted": sum(code == 200 for code, _ in answers),
                         "refused": sum(code != 200 for code, _ in answers),
                         "messages": sorted({detail for code, detail in answers if code != 200})}
    second = _client(url, "10.1.0.4")
    results["second_user_4_tokens_s"] = round(_kangaroo(second, 4), 3)

    latencies, errors = [], []

    def one(i: int) -> None:
        try:
            latencies.append(_kangaroo(_client(url, f"10.2.{i // 250}.{i % 250 + 1}"), 1))
        except Exception as exc:  # noqa: BLE001 - a refusal is a result here
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(burst)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    latencies.sort()
    refused = [e for e in errors if "requests waiting or running" in e or "Queue is full" in e]
    results["burst"] = {"clients": burst, "answered": len(latencies), "refused": len(refused),
                        "failed_otherwise": len(errors) - len(refused), "errors": sorted(set(errors)),
                        "median_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
                        "max_s": round(latencies[-1], 3) if latencies else None,
                        "wall_s": round(time.perf_counter() - start, 3)}
    return results


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def table(r: dict) -> str:
    idle, behind = _median(r["idle_8_tokens_s"]), _median(r["behind_ct_8_tokens_s"])
    rows = [
        "| Scenario | Measured |", "|---|---|",
        f"| 8-token Kangaroo request, idle ({len(r['idle_8_tokens_s'])} runs) | median {idle:.2f} s "
        f"({', '.join(f'{x:.2f}' for x in r['idle_8_tokens_s'])}) |",
        f"| the same while another session runs a {r['settings']['ct_iterations']}-iteration CT job | median "
        f"{behind:.2f} s ({', '.join(f'{x:.2f}' for x in r['behind_ct_8_tokens_s'])}); {behind / idle:.2f}x idle; "
        f"under 5 s: {'yes' if max(r['behind_ct_8_tokens_s']) < 5 else 'no'}; CT job still running after: "
        f"{r['ct_still_running_after']} |",
        f"| one client joins {r['holder']['submitted']} CT jobs | {r['holder']['accepted']} accepted, "
        f"{r['holder']['refused']} refused (cap {r['settings']['max_jobs_per_client']}) |",
        f"| a second user's 4-token request meanwhile | {r['second_user_4_tokens_s']:.2f} s |",
        f"| burst of {r['burst']['clients']} clients (distinct addresses), 1 token each | {r['burst']['answered']} "
        f"answered, {r['burst']['refused']} refused by the server, {r['burst'].get('failed_otherwise', 0)} other errors "
        f"(client time-outs); median {r['burst']['median_s']} s, max {r['burst']['max_s']} s |",
        f"\nLoad average when it started: {r['settings']['load_average_at_start']:.1f} "
        f"({r['settings'].get('cpu', '2 cores')}).",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    from adapters.filter2noise.config import MAX_ITERATIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct-iterations", type=int, default=MAX_ITERATIONS)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--holder-jobs", type=int, default=10)
    args = parser.parse_args(argv)
    port = _free_port()
    proc = start_server(port)
    try:
        started = time.perf_counter()
        results = measure(f"http://127.0.0.1:{port}/", args.ct_iterations, args.burst, args.holder_jobs)
        results["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        from tests.conftest import stop_process

        stop_process(proc)
    results["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["command"] = "python -m bench.sharing " + " ".join(argv if argv is not None else sys.argv[1:])
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
