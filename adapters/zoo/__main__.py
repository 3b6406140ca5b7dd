"""``python -m adapters.zoo warm``: convert (once) and load every zoo model, printing the time each
step took and the parameter counts; CI runs it before the tests. ``python -m adapters.zoo bench``
times inference on this machine (SmolLM2 greedy tokens/s, DINOv2-S and EfficientNet-Lite0 forwards,
MiniLM embeddings)."""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

from adapters import zoo
from adapters.common.weights import count_params


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm(keys) -> int:
    print(f"zoo cache: {zoo.cache_dir()}")
    failed = 0
    for key in keys:
        entry = zoo.MODELS[key]
        try:
            start = time.perf_counter()
            directory = entry.source_dir()
            prepared = time.perf_counter() - start
            start = time.perf_counter()
            model, _ = entry.load()
            loaded = time.perf_counter() - start
        except zoo.MissingModelPackage as exc:
            print(f"{key:13s} MISSING  {exc}")
            failed += 1
            continue
        print(f"{key:13s} prepare {prepared:7.2f} s  load {loaded:6.2f} s  params {count_params(model):>11,}  "
              f"max RSS {_rss_mb():6.0f} MB  {directory}", flush=True)
    return 1 if failed else 0


def bench(threads: int, tokens: int) -> int:
    import torch
    from skimage import data

    torch.set_num_threads(threads)
    print(f"torch threads: {threads}")

    model, tokenizer = zoo.load_smollm2()
    batch = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=2, do_sample=False)  # warm-up
        start = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        greedy = time.perf_counter() - start
        ids = out[:, :]
        start = time.perf_counter()
        model(input_ids=ids)
        forced = time.perf_counter() - start
    text = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"smollm2       greedy {tokens / greedy:6.1f} tok/s ({tokens} tokens), teacher-forced "
          f"{ids.shape[1] / forced:6.1f} tok/s ({ids.shape[1]} tokens); continuation {text[:60]!r}")

    for key, size in (("dinov2_small", 224), ("efficientnet", 224)):
        model, prep = zoo.load(key)
        x = prep(data.chelsea(), size)
        times = []
        with torch.no_grad():
            model(x)
            for _ in range(3):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        print(f"{key:13s} forward {size}x{size}: {statistics.median(times) * 1000:7.1f} ms (median of 3)")

    model, tokenizer = zoo.load_minilm()
    sentences = ["A man is playing a guitar."] * 8
    zoo.minilm_embed(model, tokenizer, sentences)
    start = time.perf_counter()
    zoo.minilm_embed(model, tokenizer, sentences)
    print(f"minilm        8 sentences: {(time.perf_counter() - start) * 1000:7.1f} ms")
    print(f"max RSS {_rss_mb():.0f} MB")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.zoo", description=__doc__)
    parser.add_argument("command", nargs="?", default="warm", choices=("warm", "bench"))
    parser.add_argument("--cache-dir", help="where converted models go (default <repo>/.cache/zoo)")
    parser.add_argument("--only", nargs="*", choices=sorted(zoo.MODELS), help="warm these models only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for bench (default 1)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens to generate in bench (default 32)")
    args = parser.parse_args(argv)
    if args.cache_dir:
        zoo.set_cache_dir(args.cache_dir)
    if args.command == "warm":
        return warm(args.only or list(zoo.MODELS))
    return bench(args.threads, args.tokens)


if __name__ == "__main__":
    sys.exit(main())
