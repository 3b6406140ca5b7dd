"""MMA bench on the small VLM (frozen DINOv2-S + trained projector + frozen SmolLM2-135M-Instruct).

    python -m bench.mma [--quick] [--threads N] [--write]

One run measures, on scenes of held-out compositions (colour-shape pairs and shape counts never
rendered for training; `adapters.vlm.scenes`), greedy first-word VQA accuracy per question type for:
the projector-only VLM (adapters off), the same model with the picture withheld (its text-only
prior), the VLM with MMA adapters, and with the same adapters trained without the router; chance per
type. Text-only retention: on held-out text instructions, the share of the frozen model's greedy
answer tokens the adapted model also ranks first (teacher forcing) and the mean KL divergence.
Captions of two real photographs (scikit-image's astronaut and coffee). The first tab example's
time on this machine.

`--write` is the only writer of assets/mma/figures.json and renders assets/mma/MODEL_CARD.md. CPU
minutes of training are read from the logs the training scripts write in assets/mma/.

What depends on the frozen language model alone (its answers with the picture withheld, its greedy
answers to the held-out text prompts) never changes with training: it is kept in a git-ignored cache
(.cache/bench-mma-frozen.json, keyed by the exact questions) and `--prepare` fills it ahead of a run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

TAB = "mma"
FROZEN_CACHE = REPO / ".cache" / "bench-mma-frozen.json"
HELDOUT_SCENES = 120
PER_TYPE = 24
CAPTION_QUESTION = "Describe the picture in one sentence."
PHOTOS = ("astronaut", "coffee")


def _scenes(split: str, n: int):
    from adapters.vlm.scenes import make_scene

    return [make_scene(i, split) for i in range(n)]


@torch.no_grad()
def _patches(vlm, scenes, needed) -> dict:
    return {i: vlm.image_patches(scenes[i].image) for i in sorted(needed)}


def frozen_cached(name: str, key, compute):
    """``compute()`` of a frozen-model-only measurement, cached under ``name`` for this ``key``."""
    import hashlib

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = json.loads(FROZEN_CACHE.read_text()) if FROZEN_CACHE.is_file() else {}
    if cache.get(name, {}).get("key") == digest:
        return cache[name]["value"]
    value = compute()
    cache = json.loads(FROZEN_CACHE.read_text()) if FROZEN_CACHE.is_file() else {}
    cache[name] = {"key": digest, "value": value}
    FROZEN_CACHE.parent.mkdir(parents=True, exist_ok=True)
    FROZEN_CACHE.write_text(json.dumps(cache))
    return value


def frozen_measurements(vlm, items, prompts) -> tuple[dict, list]:
    """(VQA accuracy with the picture withheld, greedy answers to the text prompts): the frozen LM
    alone, no projector and no adapter involved."""
    from adapters.vlm.evaluate import vqa_accuracy

    questions = [(qa.question, qa.answer, qa.kind) for _, qa in items]
    prior = frozen_cached("prior_v2", questions, lambda: vqa_accuracy(vlm, None, items, with_image=False))

    def answers():
        out = []
        for lo in range(0, len(prompts), 8):
            chunk = prompts[lo:lo + 8]
            out += vlm.answer(chunk, [None] * len(chunk), max_new=32)
        return out

    return prior, frozen_cached("text_answers", prompts, answers)


def heldout_items(quick: bool):
    from adapters.vlm.evaluate import question_items

    scenes = _scenes("heldout", 40 if quick else HELDOUT_SCENES)
    return scenes, question_items(scenes, 6 if quick else PER_TYPE)


def text_prompts(quick: bool) -> list[str]:
    from adapters.mma import data as text_data

    return text_data.prompts("heldout")[: 8 if quick else None]


def prepare(quick: bool = False) -> None:
    """Fill the frozen-model cache (no trained file needed)."""
    from adapters.vlm.model import VisionLanguageModel
    from adapters.vlm.modeling import Projector, ProjectorConfig
    from adapters.zoo import load_smollm2

    torch.set_num_threads(1)
    lm, tokenizer = load_smollm2()
    vlm = VisionLanguageModel(lm, tokenizer, Projector(ProjectorConfig()), None, None)
    _, items = heldout_items(quick)
    frozen_measurements(vlm, items, text_prompts(quick))


def measure_all(quick: bool = False, threads: int = 1) -> dict:
    from adapters.mma import inference
    from adapters.mma.config import make_request
    from adapters.mma.loading import PLAIN_FILE, load_bundled, load_mma, wrap
    from adapters.mma.metrics import answer_fn, text_retention
    from adapters.vlm.evaluate import vqa_accuracy
    from adapters.vlm.scenes import CHANCE
    from studio.loader import ASSETS

    torch.set_num_threads(threads)
    directory = ASSETS / TAB
    bundle = load_bundled(directory)
    vlm = bundle.vlm
    plain = None
    if (directory / PLAIN_FILE).is_file():
        plain_mma, plain_projector = load_mma(directory / PLAIN_FILE)
        plain = wrap(vlm, plain_mma, "plain", plain_projector)
    per_type = 6 if quick else PER_TYPE
    scenes, items = heldout_items(quick)
    prompts = text_prompts(quick)
    prior, frozen_answers = frozen_measurements(vlm, items, prompts)
    by_index = _patches(vlm, scenes, {i for i, _ in items})
    width = max(by_index) + 1
    patches = torch.zeros(width, *next(iter(by_index.values())).shape[1:])
    for i, p in by_index.items():
        patches[i] = p[0]
    start = time.perf_counter()
    accuracy = {
        "projector only": vqa_accuracy(vlm, patches, items),
        "picture withheld (text-only prior)": prior,
        "+ MMA adapters (router)": vqa_accuracy(vlm, patches, items, answer_fn=answer_fn(bundle)),
    }
    if plain is not None:
        accuracy["+ adapters without router"] = vqa_accuracy(vlm, patches, items, answer_fn=answer_fn(plain))
    vqa_seconds = time.perf_counter() - start

    retention = {"+ MMA adapters (router)": text_retention(bundle, prompts, frozen_answers)}
    if plain is not None:
        retention["+ adapters without router"] = text_retention(plain, prompts, frozen_answers)
    retention["+ MMA adapters, route forced to image"] = text_retention(bundle, prompts, frozen_answers, route="image")

    from skimage import data

    captions = {}
    for name in PHOTOS:
        rgb = getattr(data, name)()
        p = vlm.image_patches(rgb)
        captions[name] = {
            "projector only": vlm.decode(vlm.answer([CAPTION_QUESTION], [p], max_new=24)[0]),
            "+ MMA adapters": vlm.decode(answer_fn(bundle)([CAPTION_QUESTION], [p], 24, None)[0]),
        }

    from tabs.mma import EXAMPLES  # the rows the tab offers; reading them imports no gradio model code

    first = EXAMPLES[0]
    from adapters.common.imaging import read_rgb_image

    request = make_request(first[1], read_rgb_image(first[0]), first[3], first[2], first[4])
    t0, c0 = time.perf_counter(), time.process_time()
    example = inference.run(bundle, request)
    example_seconds, example_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"accuracy": accuracy, "chance": CHANCE, "retention": retention, "captions": captions,
            "example": {"seconds": example_seconds, "cpu_seconds": example_cpu, "question": first[1],
                        "mma": example.mma_image.text, "projector_only": example.base_image.text},
            "items": len(items), "per_type": per_type, "vqa_seconds": vqa_seconds, "threads": threads,
            "adapter_params": bundle.adapter_params(), "projector_params": bundle.projector_params(),
            "frozen_params": vlm.frozen_params(), "layers": list(bundle.mma.config.layers)}


def run(quick: bool = False, threads: int = 1) -> list[dict]:
    """Rows for `bench.run_all`."""
    m = measure_all(quick=quick, threads=threads)
    acc, rows = m["accuracy"], []
    base = acc["projector only"]["all"]["accuracy"]
    for name, table in acc.items():
        rows.append({"tab": TAB, "case": name, "metric": "held-out VQA accuracy", "value": round(table["all"]["accuracy"], 3),
                     "baseline": "projector only", "ratio": round(table["all"]["accuracy"] / max(base, 1e-9), 3),
                     "note": f"{table['all']['n']} questions; closed set {table['all']['choice']:.3f}"})
    for name, r in m["retention"].items():
        rows.append({"tab": TAB, "case": name, "metric": "text-only agreement with the frozen model",
                     "value": round(r["agreement"], 3), "baseline": "frozen model: 1", "ratio": round(r["agreement"], 3),
                     "note": f"{r['positions']} answer tokens, KL {r['kl']:.4f}"})
    rows.append({"tab": TAB, "case": "first example", "metric": "seconds", "value": round(m["example"]["seconds"], 2),
                 "baseline": None, "ratio": None, "note": f"{threads} thread(s)"})
    return rows


def build_figures(m: dict, logs: dict, seconds: float, quick: bool) -> dict:
    from adapters.common import figures
    from adapters.vlm.scenes import QUESTION_TYPES

    acc = m["accuracy"]
    counts = next(iter(acc.values()))
    columns = ["model", *QUESTION_TYPES, "all"]
    rows = []
    for name, table in acc.items():
        rows.append([f"{name}: open answer", *[f"{table[k]['accuracy']:.0%}" if k in table else "-" for k in QUESTION_TYPES],
                     f"{table['all']['accuracy']:.1%}"])
        rows.append([f"{name}: closed set", *[f"{table[k]['choice']:.0%}" if k in table else "-" for k in QUESTION_TYPES],
                     f"{table['all']['choice']:.1%}"])
    rows.append(["chance (closed set)", *[f"{m['chance'][k]:.0%}" for k in QUESTION_TYPES],
                 f"{sum(m['chance'][k] * counts[k]['n'] for k in QUESTION_TYPES if k in counts) / counts['all']['n']:.1%}"])
    per_type = ", ".join(f"{k} {counts[k]['n']}" for k in QUESTION_TYPES if k in counts)
    vqa = figures.table(
        "vqa", "Held-out-composition VQA accuracy per question type: open (first word of the greedy answer) and "
               "closed set (the highest-ranked of the type's answers)",
        columns, rows,
        note=(f"{m['items']} questions ({per_type}) on "
              f"scenes that each contain a colour-shape pair or a shape count never rendered for training; the "
              f"questions are about those compositions. 'Picture withheld': the same projector-only model asked "
              f"without image tokens."))
    ret = figures.table(
        "retention", "Text-only retention on held-out instructions (teacher-forced on the frozen model's greedy answers)",
        ["model", "top-1 agreement with the frozen model", "mean KL(frozen || adapted)", "answer tokens"],
        [[name, f"{r['agreement']:.1%}", f"{r['kl']:.4f}", r["positions"]] for name, r in m["retention"].items()])
    caps = figures.table(
        "captions", "Captions of real photographs (never seen in training; the training captions describe shapes)",
        ["photo", "projector only", "+ MMA adapters"],
        [[name, c["projector only"], c["+ MMA adapters"]] for name, c in m["captions"].items()])
    vlm_log, mma_log = logs.get("vlm", {}), logs.get("mma", {})
    proj = vlm_log.get("projector_seed0", {})
    notes = [
        f"First tab example ({m['example']['question']!r}): {m['example']['seconds']:.1f} s wall for all four answers "
        f"on {m['threads']} thread(s) of a CPU shared with other jobs, {m['example']['cpu_seconds']:.1f} CPU s; MMA answered {m['example']['mma']!r}, projector only "
        f"{m['example']['projector_only']!r}.",
        f"Trained parameters: projector (stage 1, then frozen) {m['projector_params']:,}; MMA adapters and modality "
        f"tokens {m['adapter_params']:,} (layers {m['layers'][0]}-{m['layers'][-1]}); frozen {m['frozen_params']:,}.",
    ]
    if proj:
        notes.append(f"Projector training: {proj['steps']} steps x {proj['batch']} scenes x up to {proj['turns']} "
                     f"questions, {proj['cpu_s'] / 60:.1f} CPU min on one thread (loss {proj['loss_first10']} -> "
                     f"{proj['loss_last10']}); feature caching {vlm_log.get('features_cpu_s', 0) / 60:.1f} CPU min.")
    for variant in ("routed", "plain"):
        r, r2 = mma_log.get(f"{variant}_seed0"), mma_log.get(f"{variant}_seed0_phase2")
        if r:
            notes.append(f"Adapters ({variant}), phase 1: {r['steps']} steps, {r['cpu_s'] / 60:.1f} CPU min on one thread "
                         f"(loss {r['loss_first10']} -> {r['loss_last10']}).")
        if r2:
            router = f", router lr {r2['router_lr']:g}" if variant == "routed" else ""
            notes.append(f"Adapters ({variant}), phase 2: {r2['steps']} steps with {r2['text_rows']} distilled text "
                         f"rows each{router}, {r2['cpu_s'] / 60:.1f} CPU min on one thread of an {r2['machine']} "
                         f"(loss {r2['loss_first10']} -> {r2['loss_last10']}; text KL {r2['text_kl_first10']} -> "
                         f"{r2['text_kl_last10']}).")
    data = {"measured": m, "training": logs, "quick": quick}
    command = "python -m bench.mma --write" + (" --quick" if quick else "")
    return figures.figures(TAB, figures.provenance(command, seconds), [vqa, ret, caps], notes, data)


def write(quick: bool = False, threads: int = 1) -> dict:
    from bench import read_log, write_measured
    from studio.loader import ASSETS

    directory = ASSETS / TAB
    logs = {key: read_log(directory / f"{key}_training_log.json") for key in ("vlm", "mma")}
    return write_measured(directory, lambda: measure_all(quick=quick, threads=threads),
                          lambda measured, seconds: build_figures(measured, logs, seconds, quick), threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write assets/mma/figures.json and MODEL_CARD.md")
    parser.add_argument("--prepare", action="store_true", help="only fill the frozen-model cache")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(quick=args.quick)
        return
    if args.write:
        from adapters.common.figures import figures_markdown

        print(figures_markdown(write(quick=args.quick, threads=args.threads)))
        return
    print(json.dumps(measure_all(quick=args.quick, threads=args.threads), indent=1, default=str))


if __name__ == "__main__":
    main()
