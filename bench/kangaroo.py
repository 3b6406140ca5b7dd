"""Kangaroo bench on SmolLM2-135M-Instruct: output identical to greedy, wall-clock speedup over our own
plain greedy decoding with a KV cache (same model, same prompts, same run; median over prompts),
acceptance rate and tokens per verification pass, per setting; and our greedy against transformers'
`generate`.

    python -m bench.kangaroo [--quick] [--threads N] [--write]

Prompts: `def quicksort(arr):` and 20 held-out instruction prompts (10 asking for code, 10 asking for
an explanation in English; built from documented functions of standard-library files the adapter
never trained on), all sent through the model's chat template. Per prompt, plain greedy runs before
and after the Kangaroo settings, and each setting runs twice (again after the second greedy run);
every decoder's faster run counts (the machine is shared; the minimum is the least disturbed), so
load from other jobs hits both sides of each ratio alike.

`--write` (the full bench unless --quick) is the only writer of assets/kangaroo/figures.json; it also
renders assets/kangaroo/MODEL_CARD.md from MODEL_CARD.template.md. Figures only training can measure
(draft agreement on held-out text, CPU minutes) are read from assets/kangaroo/training_log.json,
which `training/kangaroo/train.py` writes, and cited as such.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402  (after the path set-up above)

from adapters.kangaroo.config import DEFAULT_GAMMA, DEFAULT_THRESHOLD  # noqa: E402
from adapters.kangaroo.data import instruction_prompts  # noqa: E402
from adapters.kangaroo.inference import warm  # noqa: E402
from adapters.kangaroo.modeling import kangaroo_decode  # noqa: E402
from adapters.speculative.engine import greedy_decode  # noqa: E402

TAB = "kangaroo"
FIRST_PROMPT = "def quicksort(arr):"
PROMPT_SEED = 0
MAX_NEW = 64


def prompts(n: int) -> list[tuple[str, str]]:
    """(kind, message): `def quicksort(arr):` then `n` held-out prompts, half code, half English."""
    return [("code", FIRST_PROMPT)] + instruction_prompts("heldout", n, seed=PROMPT_SEED)


def settings_for(quick: bool, exit_layer: int) -> list[dict]:
    """The tab's default (adapter + trimmed head) first, then what each part contributes."""
    main = dict(adapter=True, trimmed=True, threshold=DEFAULT_THRESHOLD, gamma=DEFAULT_GAMMA)
    rows = [main, dict(main, trimmed=False), dict(main, adapter=False)]
    if not quick:
        rows += [dict(main, threshold=0.3), dict(main, threshold=0.7), dict(main, gamma=DEFAULT_GAMMA + 2)]
    return [dict(s, k=exit_layer) for s in rows]


def label(s: dict) -> str:
    return (f"k={s['k']} threshold={s['threshold']} gamma={s['gamma']} {'adapter' if s['adapter'] else 'bare exit'}, "
            f"{'trimmed' if s['trimmed'] else 'full'} head")


def measure(bundle, settings: list[dict], encoded: list[list[int]], max_new: int) -> dict:
    """Per setting and prompt: the greedy tokens and time (best of the runs before and after), the
    Kangaroo run, and whether its tokens equal greedy's."""
    model, eos, vocab = bundle.model, bundle.codec.eos_id, bundle.draft_vocab
    per_prompt = []
    for ids in encoded:
        first = greedy_decode(model, ids, max_new, eos_id=eos)
        def decode(s: dict):
            adapter = bundle.adapter(s["k"]) if s["adapter"] else None
            return kangaroo_decode(model, adapter, ids, max_new, threshold=s["threshold"], gamma=s["gamma"],
                                   eos_id=eos, exit_layer=s["k"], draft_vocab=vocab if s["trimmed"] else None)

        runs = [decode(s) for s in settings]
        second = greedy_decode(model, ids, max_new, eos_id=eos)
        assert first.tokens == second.tokens
        # each setting runs twice too, in reverse order, and its faster run counts, as greedy's does
        again = [decode(s) for s in reversed(settings)][::-1]
        assert all(a.tokens == b.tokens for a, b in zip(runs, again))
        runs = [min(a, b, key=lambda d: d.seconds) for a, b in zip(runs, again)]
        greedy = min(first, second, key=lambda d: d.seconds)
        per_prompt.append((greedy, runs))
    results = {}
    for i, s in enumerate(settings):
        speedups = [g.seconds / runs[i].seconds for g, runs in per_prompt]
        runs = [r[i] for _, r in per_prompt]
        drafted = sum(r.drafted for r in runs)
        tokens = sum(len(r.tokens) for r in runs)
        results[label(s)] = {
            "setting": s,
            "median_speedup": statistics.median(speedups), "min_speedup": min(speedups), "max_speedup": max(speedups),
            "total_speedup": sum(g.seconds for g, _ in per_prompt) / sum(r.seconds for r in runs),
            "acceptance_rate": sum(r.accepted for r in runs) / drafted if drafted else 0.0,
            "tokens_per_pass": tokens / sum(r.verify_passes for r in runs),
            "identical": sum(r.tokens == g.tokens for r, (g, _) in zip(runs, per_prompt)),
            "prompts": len(runs),
            "greedy_ms_per_token": 1e3 * sum(g.seconds for g, _ in per_prompt) / sum(len(g.tokens) for g, _ in per_prompt),
            "kangaroo_ms_per_token": 1e3 * sum(r.seconds for r in runs) / tokens,
            "first_prompt_speedup": speedups[0],
        }
    return results


def hf_generate(bundle, encoded: list[list[int]], max_new: int) -> dict:
    """transformers' own `generate` (greedy, its DynamicCache) on the same prompts: ms per token, and
    whether its tokens equal our greedy's."""
    total, count, same = 0.0, 0, 0
    model, eos = bundle.model, bundle.codec.eos_id
    for ids in encoded:
        ours = greedy_decode(model, ids, max_new, eos_id=eos).tokens
        tensor = torch.tensor([ids])
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=max_new,
                                 do_sample=False, eos_token_id=eos, pad_token_id=eos)
            total += time.perf_counter() - start
        theirs = out[0, len(ids):].tolist()
        count += len(theirs)
        same += theirs == ours
    return {"ms_per_token": 1e3 * total / count, "identical": same, "prompts": len(encoded)}


@torch.inference_mode()
def pass_cost(model, context: int = 200, sizes=(1, 2, 4, 6), repeats: int = 9) -> dict:
    """Milliseconds for one pass of n new tokens through every layer and the head after `context`
    cached tokens, with the runner both decoders use (median of `repeats`): what a verification pass
    of n tokens costs against one greedy step."""
    from adapters.speculative.engine import KVCache, LayerRunner

    runner = LayerRunner(model, context + max(sizes) + 1)
    cache = KVCache(runner.num_layers, runner.max_length)
    generator = torch.Generator().manual_seed(0)
    vocab = runner.embed.weight.shape[0]
    runner.run(runner.embed(torch.randint(0, vocab, (1, context), generator=generator)), 0, 0, runner.num_layers, cache)
    cost = {}
    for n in sizes:
        times = []
        for _ in range(repeats):
            x = runner.embed(torch.randint(0, vocab, (1, n), generator=generator))
            start = time.perf_counter()
            runner.logits(runner.run(x, context, 0, runner.num_layers, cache)).argmax(-1)
            times.append(time.perf_counter() - start)
            cache.crop(context)
        cost[n] = 1e3 * statistics.median(times)
    return cost


@torch.inference_mode()
def draft_cost(bundle, context: int = 200, repeats: int = 9) -> float:
    """Milliseconds for one drafted token at the tab's default exit after `context` cached tokens:
    the new token through layers 1..k, the adapter and the draft's (trimmed) head, as
    `speculative_decode` drafts it (median of `repeats`)."""
    from adapters.kangaroo.modeling import AdapterDrafter
    from adapters.speculative.engine import KVCache, LayerRunner

    drafter = AdapterDrafter(bundle.adapter(bundle.default_exit), bundle.draft_vocab)
    runner = LayerRunner(bundle.model, context + 2)
    cache = KVCache(runner.num_layers + drafter.cache_slots, runner.max_length)
    drafter.bind(runner, cache)
    k, vocab = drafter.shared_layers, runner.embed.weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    drafter.extend(runner.run(runner.embed(torch.randint(0, vocab, (1, context), generator=generator)), 0, 0, k, cache), 0)
    times = []
    for _ in range(repeats):
        token = torch.randint(0, vocab, (1, 1), generator=generator)
        start = time.perf_counter()
        drafter.propose(drafter.extend(runner.run(runner.embed(token), context, 0, k, cache), context))
        times.append(time.perf_counter() - start)
        cache.crop(context)
    return 1e3 * statistics.median(times)


def measure_all(quick: bool = False, threads: int = 1) -> dict:
    from adapters.kangaroo.loading import load_bundled
    from studio.loader import ASSETS

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        bundle = load_bundled(ASSETS / TAB)
        chosen = prompts(4 if quick else 20)
        encoded = [bundle.codec.encode_chat(message) for _, message in chosen]
        settings = settings_for(quick, bundle.default_exit)
        warm(bundle, encoded[0], bundle.default_exit)
        results = measure(bundle, settings, encoded, MAX_NEW)
        hf = hf_generate(bundle, encoded[: 2 if quick else 6], MAX_NEW)
        cost = pass_cost(bundle.model)
        draft_ms = draft_cost(bundle)
    finally:
        torch.set_num_threads(previous)
    return {"results": results, "hf": hf, "pass_ms": cost, "draft_ms": draft_ms, "prompts": chosen, "threads": threads,
            "max_new": MAX_NEW, "num_layers": bundle.num_layers,
            "draft_vocab": 0 if bundle.draft_vocab is None else len(bundle.draft_vocab)}


def run(quick: bool = False, threads: int = 1) -> list[dict]:
    """Rows for `bench.run_all`: per setting the median speedup over greedy, acceptance, tokens per pass."""
    measured = measure_all(quick=quick, threads=threads)
    rows = []
    for case, r in measured["results"].items():
        note = (f"{r['prompts']} prompts, median over prompts (range {r['min_speedup']:.2f}-{r['max_speedup']:.2f}x); "
                f"identical to greedy on {r['identical']}/{r['prompts']}")
        rows += [
            {"tab": TAB, "case": case, "metric": "wall-clock speedup", "value": round(r["median_speedup"], 3),
             "baseline": "plain greedy with KV cache (same run)", "ratio": round(r["median_speedup"], 3), "note": note},
            {"tab": TAB, "case": case, "metric": "acceptance rate", "value": round(r["acceptance_rate"], 3),
             "baseline": None, "ratio": None, "note": "accepted / drafted tokens"},
            {"tab": TAB, "case": case, "metric": "tokens per verification pass", "value": round(r["tokens_per_pass"], 3),
             "baseline": "plain greedy: 1", "ratio": round(r["tokens_per_pass"], 3), "note": ""},
        ]
    hf = measured["hf"]
    rows.append({"tab": TAB, "case": "baseline check", "metric": "ms per token, transformers generate",
                 "value": round(hf["ms_per_token"], 2), "baseline": None, "ratio": None,
                 "note": f"{hf['prompts']} prompts; tokens identical to our greedy on {hf['identical']}"})
    return rows


def speed_table_rows(measured: dict) -> list[list]:
    rows = []
    for case, r in measured["results"].items():
        rows.append([case, f"{r['acceptance_rate']:.2f}", f"{r['tokens_per_pass']:.2f}",
                     f"{r['median_speedup']:.2f}x", f"{r['min_speedup']:.2f}-{r['max_speedup']:.2f}x",
                     f"{r['first_prompt_speedup']:.2f}x", f"{r['identical']}/{r['prompts']}"])
    return rows


def build_figures(measured: dict, log: dict, seconds: float, quick: bool) -> dict:
    from adapters.common import figures

    results, hf, threads = measured["results"], measured["hf"], measured["threads"]
    cost = {int(n): ms for n, ms in measured["pass_ms"].items()}
    n = len(measured["prompts"])
    speed = figures.table(
        "speed", f"Decoding speed on SmolLM2-135M-Instruct ({n} prompts x up to {measured['max_new']} new tokens, "
                 f"{threads} torch thread{'s' if threads != 1 else ''}, same run)",
        ["setting", "acceptance", "tokens / pass", "speedup vs greedy (median)", "range over prompts",
         "def quicksort(arr):", "identical to greedy"],
        speed_table_rows(measured),
        note="Speedup: our plain greedy decoding with a KV cache divided by Kangaroo, per prompt (wall clock).")
    agreement = log.get("agreement", {})
    exit_trained = log.get("exit")
    agreement_rows = []
    for k, row in sorted(agreement.items(), key=lambda kv: int(kv[0])):
        bare, adapter = row["bare_exit"], row.get("adapter")
        agreement_rows.append([
            k, f"{adapter['full_head_top1']:.1%}" if adapter else "not trained",
            f"{adapter['trimmed_head_top1']:.1%}" if adapter else "not trained",
            f"{bare['full_head_top1']:.1%}", f"{bare['trimmed_head_top1']:.1%}"])
    vocab = log.get("draft_vocab", {})
    agreement_table = figures.table(
        "agreement", "Draft top-1 agreement with the full model on held-out answers (teacher forcing)",
        ["exit layer k", "adapter, full head", f"adapter, trimmed head ({vocab.get('size', 0):,} tokens)",
         "bare exit, full head", "bare exit, trimmed head"],
        agreement_rows,
        note=(f"Measured when the adapter was trained (python -m training.kangaroo.train; training_log.json) over "
              f"{next(iter(agreement.values()))['bare_exit']['positions'] if agreement else 0:,} positions of the "
              f"model's own answers to held-out prompts. The trimmed head covers "
              f"{vocab.get('heldout_coverage', 0):.1%} of the full model's tokens there."))
    main_case, main = next(iter(results.items()))
    best_case, best = max(results.items(), key=lambda cr: cr[1]["median_speedup"])
    ours_ms = main["greedy_ms_per_token"]
    notes = [
        f"Our plain greedy decoding took {ours_ms:.1f} ms per token, transformers' `generate` (greedy) "
        f"{hf['ms_per_token']:.1f} ms per token on {hf['prompts']} of the prompts (tokens identical on "
        f"{hf['identical']}/{hf['prompts']}); Kangaroo at the tab's default took {main['kangaroo_ms_per_token']:.1f} ms "
        f"per token ({hf['ms_per_token'] / main['kangaroo_ms_per_token']:.2f}x the speed of `generate`).",
        f"Every Kangaroo output was compared token for token with plain greedy: identical on "
        f"{sum(r['identical'] for r in results.values())} of {sum(r['prompts'] for r in results.values())} decodes.",
    ]
    data_log = log.get("data", {})
    text = {
        "exit": str(exit_trained), "vocab_size": f"{vocab.get('size', 0):,}",
        "vocab_coverage": f"{vocab.get('heldout_coverage', 0):.1%}",
        "train_tokens": f"{data_log.get('train_tokens', 0):,}", "heldout_tokens": f"{data_log.get('heldout_tokens', 0):,}",
        "train_prompts": str(data_log.get("train_prompts")), "heldout_prompts": str(data_log.get("heldout_prompts")),
        "raw_windows": str(data_log.get("raw_windows")), "raw_length": str(data_log.get("raw_length")),
        "answer_tokens": str(data_log.get("answer_tokens")), "top_k": str(data_log.get("top_k")),
        "data_cpu_min": f"{log.get('data_cpu_s', 0) / 60:.1f}", "adapter_cpu_min": f"{log.get('adapter_cpu_s', 0) / 60:.1f}",
        "adapter_steps": str(log.get("adapter_steps")), "adapter_batch": str(log.get("adapter_batch")),
        "adapter_lr": str(log.get("adapter_lr")), "adapter_scored": str(log.get("adapter_scored_positions")),
        "seed": str(log.get("seed", 0)),
        "main_case": main_case, "main_speedup": f"{main['median_speedup']:.2f}x",
        "main_range": f"{main['min_speedup']:.2f}-{main['max_speedup']:.2f}x",
        "main_tokens_per_pass": f"{main['tokens_per_pass']:.2f}", "main_acceptance": f"{main['acceptance_rate']:.0%}",
        "best_case": best_case, "best_speedup": f"{best['median_speedup']:.2f}x",
        "greedy_ms": f"{ours_ms:.1f}", "hf_ms": f"{hf['ms_per_token']:.1f}",
        "pass_1_ms": f"{cost[1]:.0f}", "pass_4_ms": f"{cost[4]:.0f}", "pass_4_ratio": f"{cost[4] / cost[1]:.2f}",
        "draft_step_ms": f"{measured['draft_ms']:.1f}", "draft_step_ratio": f"{measured['draft_ms'] / cost[1]:.2f}",
        "pass_costs": ", ".join(f"{n} token{'s' if n > 1 else ''} {ms:.0f} ms" for n, ms in cost.items()),
    }
    data = {
        "main": {"case": main_case, **{k: v for k, v in main.items() if k != "setting"}},
        "speed": {case: {k: v for k, v in r.items() if k != "setting"} for case, r in results.items()},
        "agreement": agreement, "draft_vocab": vocab,
        "hf_generate": hf, "pass_ms": cost, "draft_ms": measured["draft_ms"], "prompts": [m for _, m in measured["prompts"]],
        "training": {k: v for k, v in log.items() if k != "agreement"}, "quick": quick, "text": text,
    }
    command = "python -m bench.kangaroo --write" + (" --quick" if quick else "")
    return figures.figures(TAB, figures.provenance(command, seconds), [agreement_table, speed], notes, data)


def write(quick: bool = False, threads: int = 1) -> dict:
    from bench import read_log, write_measured
    from studio.loader import ASSETS

    directory = ASSETS / TAB
    log = read_log(directory / "training_log.json")
    return write_measured(directory, lambda: measure_all(quick=quick, threads=threads),
                          lambda measured, seconds: build_figures(measured, log, seconds, quick), threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write assets/kangaroo/figures.json and MODEL_CARD.md")
    args = parser.parse_args(argv)
    if args.write:
        from adapters.common.figures import figures_markdown

        print(figures_markdown(write(quick=args.quick, threads=args.threads)))
        return
    measured = measure_all(quick=args.quick, threads=args.threads)
    for row in speed_table_rows(measured):
        print(" | ".join(row))
    print("transformers generate:", measured["hf"])


if __name__ == "__main__":
    main()
