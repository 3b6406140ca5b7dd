"""Train everything in assets/codeberter from a seed, on one CPU thread, resumably.

Stages (each writes its result into the run directory and is skipped when done; a stage that was
cut off resumes from its last checkpoint, written every ``CHECKPOINT_S`` seconds):

1. ``probe-<enc>``: a linear probe (LayerNorm + Linear) on cached frozen features, for MiniLM and
   for SmolLM2-135M cut to its first ``SMOL_LAYERS`` blocks (a causal model: a token sees only its
   left context).
2. ``ner-<enc>``: the NER adapter (a bottleneck in every block) + the same head, ``COMPARE_STEPS``
   steps for both encoders at the same batch; the encoder with the better held-out accuracy is kept
   and its adapter trained on to ``NER_STEPS``.
3. ``bug-<with|without>-s<seed>``: the bug-localisation-and-repair task adapter, stacked above the
   frozen NER adapter or alone, ``BUG_STEPS`` steps, seeds 0, 1, 2.

Writes ``ner_adapter.safetensors`` (NER adapter, its head, the probe's head), ``codeberter.json``,
``bug_adapter_with_ner.safetensors`` and ``bug_adapter_alone.safetensors`` (seed 0) into ``--out``.
CPU seconds (process time) of every stage go into ``training_log.json`` beside the weights.

    python -m training.codeberter.train --out assets/codeberter --work .cache/codeberter-train
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import torch

from adapters.codeberter import data
from adapters.codeberter.config import BOTTLENECK, BUG_MAX_LEN, MAX_CHARS, MAX_FUNCTION_CHARS, MAX_LEN, SMOL_LAYERS
from adapters.codeberter.labels import TYPES
from adapters.codeberter.loading import encoder_for, save_bug, save_ner
from adapters.codeberter.metrics import bug_accuracy, type_accuracy
from adapters.codeberter.modeling import AdapterSet, BugHead, TypeHead, bug_batch, bug_loss, type_batch, type_loss

CHECKPOINT_S = 120
BATCH = 16
LR = 2e-3
PROBE_WINDOWS = 480
PROBE_EPOCHS = 40
EVAL_WINDOWS = 240
COMPARE_STEPS = 40
NER_STEPS = 2250
BUG_BATCH = 8
BUG_STEPS = 80
BUG_TRAIN = 1200
BUG_EVAL = 300
SEEDS = (0, 1, 2)
ENCODERS = ("minilm", "smollm2")
TRAIN_FILES = 160
if os.environ.get("CODEBERTER_SMOKE"):  # a seconds-long run of every stage, to check the script
    PROBE_WINDOWS, PROBE_EPOCHS, EVAL_WINDOWS, COMPARE_STEPS, NER_STEPS = 32, 2, 16, 2, 3
    BUG_STEPS, BUG_TRAIN, BUG_EVAL, TRAIN_FILES = 2, 40, 16, 4


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


class Run:
    """The work directory: one ``<stage>.json`` result and one ``<stage>.pt`` checkpoint per stage
    (separate files, so stages may run in parallel processes)."""

    def __init__(self, work: Path):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.reload()

    def reload(self) -> None:
        self.results = {p.stem: json.loads(p.read_text()) for p in sorted(self.work.glob("*.json"))}

    def done(self, stage: str):
        return self.results.get(stage)

    def record(self, stage: str, result: dict) -> None:
        self.results[stage] = result
        tmp = self.work / f"{stage}.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, self.work / f"{stage}.json")


def cosine_lr(step: int, total: int) -> float:
    return LR * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def train_loop(stage: str, run: Run, params, optimizer, total: int, step_fn, extra_state) -> float:
    """Steps ``step_fn(step)`` up to ``total`` with checkpoints; returns CPU seconds spent in all
    attempts."""
    ckpt = run.work / f"{stage}.pt"
    step, cpu = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for name, module in extra_state.items():
            module.load_state_dict(state[name])
        optimizer.load_state_dict(state["optimizer"])
        step, cpu = state["step"], state["cpu"]
        log(f"{stage}: resumed at step {step}")
    start_cpu, last = time.process_time(), time.time()
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total)
        loss = step_fn(step)
        step += 1
        if step % 10 == 0:
            log(f"{stage}: step {step}/{total} loss {loss:.3f}")
        if time.time() - last > CHECKPOINT_S or step == total:
            state = {name: m.state_dict() for name, m in extra_state.items()}
            state.update(optimizer=optimizer.state_dict(), step=step, cpu=cpu + time.process_time() - start_cpu)
            torch.save(state, ckpt.with_suffix(".tmp"))
            os.replace(ckpt.with_suffix(".tmp"), ckpt)
            last = time.time()
    return cpu + time.process_time() - start_cpu


def type_data(name: str, tokenizer):
    train_files, heldout_files = data.split_files()
    files = random.Random(0).sample(train_files, min(TRAIN_FILES, len(train_files)))
    train = data.type_examples(tokenizer, files, MAX_LEN, MAX_CHARS, seed=0)
    heldout = data.type_examples(tokenizer, heldout_files, MAX_LEN, MAX_CHARS, limit=EVAL_WINDOWS, seed=0)
    log(f"{name}: {len(train)} train windows from {len(files)} files, {len(heldout)} held-out windows")
    return train, heldout


def probe(run: Run, name: str, encoder, train, heldout) -> dict:
    stage = f"probe-{name}"
    if run.done(stage):
        return run.done(stage)
    cpu0 = time.process_time()
    torch.manual_seed(0)
    pad = encoder.info.pad_id
    feats, labels = [], []
    with torch.no_grad():
        for i in range(0, PROBE_WINDOWS, BATCH):
            ids, mask, lab = type_batch(train[i: i + BATCH], pad)
            h = encoder.hidden(ids, mask)
            keep = lab != -100
            feats.append(h[keep])
            labels.append(lab[keep])
    feats, labels = torch.cat(feats), torch.cat(labels)
    head = TypeHead(encoder.info.width, len(TYPES))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(PROBE_EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        for j in range(0, len(order), 1024):
            idx = order[j: j + 1024]
            loss = torch.nn.functional.cross_entropy(head(feats[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracy = type_accuracy(encoder, head, [], heldout)
    result = {"heldout_accuracy": accuracy, "train_tokens": int(len(labels)), "cpu_s": time.process_time() - cpu0}
    log(f"{stage}: {result}")
    torch.save(head.state_dict(), run.work / f"{stage}-head.pt")
    run.record(stage, result)
    return result


def ner(run: Run, name: str, encoder, train, heldout, total: int) -> tuple[dict, AdapterSet, TypeHead]:
    stage = f"ner-{name}-{total}"
    torch.manual_seed(0)
    adapter = AdapterSet(encoder.info.width, encoder.num_layers, BOTTLENECK)
    head = TypeHead(encoder.info.width, len(TYPES))
    params = list(adapter.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    pad = encoder.info.pad_id
    ckpt_dir = run.work
    # A longer run continues the longest shorter run's weights (same seed, same data order).
    earlier = sorted((int(p.stem.rsplit("-", 1)[1]), p) for p in ckpt_dir.glob(f"ner-{name}-*.pt")
                     if int(p.stem.rsplit("-", 1)[1]) < total)
    if not (ckpt_dir / f"{stage}.pt").exists() and earlier:
        state = torch.load(earlier[-1][1], weights_only=False)
        state["cpu"] = 0.0  # already counted by the comparison stage
        torch.save(state, ckpt_dir / f"{stage}.pt")

    def step_fn(step: int) -> float:
        i = (step * BATCH) % max(1, len(train) - BATCH)
        ids, mask, labels = type_batch(train[i: i + BATCH], pad)
        loss = type_loss(encoder, head, [(adapter, 1.0)], ids, mask, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    if run.done(stage):
        state = torch.load(ckpt_dir / f"{stage}.pt", weights_only=False)
        adapter.load_state_dict(state["adapter"])
        head.load_state_dict(state["head"])
        return run.done(stage), adapter, head
    cpu = train_loop(stage, run, params, optimizer, total, step_fn, {"adapter": adapter, "head": head})
    cpu0 = time.process_time()
    accuracy = type_accuracy(encoder, head, [(adapter, 1.0)], heldout)
    result = {"heldout_accuracy": accuracy, "steps": total, "batch": BATCH, "cpu_s": cpu + time.process_time() - cpu0}
    log(f"{stage}: {result}")
    run.record(stage, result)
    return result, adapter, head


def bug(run: Run, encoder, tokenizer, ner_adapter, with_ner: bool, seed: int, train, heldout) -> tuple[dict, AdapterSet, BugHead]:
    stage = f"bug-{'with' if with_ner else 'without'}-s{seed}"
    torch.manual_seed(seed)
    adapter = AdapterSet(encoder.info.width, encoder.num_layers, BOTTLENECK)
    head = BugHead(encoder.info.width, len(data.OPERATORS))
    params = list(adapter.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    stack = ([(ner_adapter, 1.0)] if with_ner else []) + [(adapter, 1.0)]
    pad, special = encoder.info.pad_id, tuple(tokenizer.all_special_ids)
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)

    def step_fn(step: int) -> float:
        i = (step * BUG_BATCH) % max(1, len(order) - BUG_BATCH)
        batch = bug_batch([train[j][1] for j in order[i: i + BUG_BATCH]], pad, special)
        ids, mask, valid, location, pointer_mask, operator = batch
        hidden = encoder.hidden(ids, mask, stack)
        loss, _, _ = bug_loss(head, hidden, valid, location, pointer_mask, operator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    if run.done(stage):
        state = torch.load(run.work / f"{stage}.pt", weights_only=False)
        adapter.load_state_dict(state["adapter"])
        head.load_state_dict(state["head"])
        return run.done(stage), adapter, head
    cpu = train_loop(stage, run, params, optimizer, BUG_STEPS, step_fn, {"adapter": adapter, "head": head})
    cpu0 = time.process_time()
    metrics = bug_accuracy(encoder, head, stack, [b for _, b in heldout], special)
    result = dict(metrics, steps=BUG_STEPS, batch=BUG_BATCH, cpu_s=cpu + time.process_time() - cpu0)
    log(f"{stage}: {result}")
    run.record(stage, result)
    return result, adapter, head


def wait_for(run: Run, stages: list[str]) -> None:
    """Block until other processes have recorded ``stages`` (the stages run in parallel processes)."""
    while not all(run.done(s) for s in stages):
        time.sleep(10)
        run.reload()


def best_encoder(run: Run) -> str:
    return max(ENCODERS, key=lambda n: run.done(f"ner-{n}-{COMPARE_STEPS}")["heldout_accuracy"]["token"])


def ner_steps(best: str) -> int:
    # SmolLM2's blocks cost about twice MiniLM's on this CPU: fewer steps keep the budget.
    return NER_STEPS if best == "minilm" else (NER_STEPS * 2) // 3


def bug_data(tokenizer):
    train_files, heldout_files = data.split_files()
    bug_train = data.bug_examples(tokenizer, train_files, BUG_TRAIN, BUG_MAX_LEN, MAX_FUNCTION_CHARS, seed=0)
    bug_heldout = data.bug_examples(tokenizer, heldout_files, BUG_EVAL, BUG_MAX_LEN, MAX_FUNCTION_CHARS, seed=1)
    log(f"bugs: {len(bug_train)} train, {len(bug_heldout)} held-out")
    return bug_train, bug_heldout


def stage_encoder(run: Run, name: str) -> None:
    encoder, tokenizer = encoder_for(name)
    train, heldout = type_data(name, tokenizer)
    probe(run, name, encoder, train, heldout)
    ner(run, name, encoder, train, heldout, COMPARE_STEPS)


def stage_ner(run: Run, out: Path):
    wait_for(run, [f"ner-{n}-{COMPARE_STEPS}" for n in ENCODERS])
    best = best_encoder(run)
    log(f"better encoder at {COMPARE_STEPS} steps: {best}")
    encoder, tokenizer = encoder_for(best)
    # A finished stage only reloads its weights: no need to rebuild its data.
    done = run.done(f"ner-{best}-{ner_steps(best)}")
    train, heldout = ([], []) if done else type_data(best, tokenizer)
    _, ner_adapter, type_head = ner(run, best, encoder, train, heldout, ner_steps(best))
    probe_head = TypeHead(encoder.info.width, len(TYPES))
    probe_head.load_state_dict(torch.load(run.work / f"probe-{best}-head.pt"))
    save_ner(out, best, encoder, ner_adapter, type_head, probe_head)
    return best, encoder, tokenizer, ner_adapter


def stage_bug(run: Run, out: Path, with_ner: bool, ner_parts=None, seeds=SEEDS) -> None:
    if with_ner:
        best, encoder, tokenizer, ner_adapter = ner_parts or stage_ner(run, out)
        ner_adapter.requires_grad_(False)
    else:
        wait_for(run, [f"ner-{n}-{COMPARE_STEPS}" for n in ENCODERS])
        best = best_encoder(run)
        encoder, tokenizer = encoder_for(best)
        ner_adapter = None
    bug_train, bug_heldout = bug_data(tokenizer)
    for seed in seeds:
        _, adapter, head = bug(run, encoder, tokenizer, ner_adapter, with_ner, seed, bug_train, bug_heldout)
        if seed == 0:
            save_bug(out, best, encoder, adapter, head, with_ner)


def stage_finish(run: Run, out: Path) -> None:
    best = best_encoder(run)
    stages = [f"bug-{w}-s{s}" for w in ("with", "without") for s in SEEDS] + [f"ner-{best}-{ner_steps(best)}"]
    wait_for(run, stages)
    results = run.results
    log_out = {"encoders": {n: {"probe": results[f"probe-{n}"], "ner": results[f"ner-{n}-{COMPARE_STEPS}"]}
                            for n in ENCODERS},
               "chosen": best, "ner": results[f"ner-{best}-{ner_steps(best)}"],
               "bug": {k[len("bug-"):]: v for k, v in results.items() if k.startswith("bug-")},
               "settings": {"batch": BATCH, "lr": LR, "compare_steps": COMPARE_STEPS, "ner_steps": ner_steps(best),
                            "bug_steps": BUG_STEPS, "bug_batch": BUG_BATCH, "bug_train": BUG_TRAIN,
                            "bug_heldout": BUG_EVAL, "max_len": MAX_LEN, "bug_max_len": BUG_MAX_LEN,
                            "bottleneck": BOTTLENECK, "smollm2_layers": SMOL_LAYERS, "threads": 1,
                            "seeds": list(SEEDS), "heldout_percent": data.HELDOUT_PERCENT},
               "cpu_minutes_total": round(sum(v["cpu_s"] for v in results.values()) / 60, 1)}
    (out / "training_log.json").write_text(json.dumps(log_out, indent=2) + "\n")
    log(f"done: {log_out['cpu_minutes_total']} CPU minutes in all stages")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", nargs="?", default="all",
                        choices=("all", "encoder", "ner", "bug-with", "bug-without", "finish"))
    parser.add_argument("--encoder", choices=ENCODERS, help="for the encoder stage")
    parser.add_argument("--seed", type=int, choices=SEEDS, help="bug stages: only this seed (run seeds in parallel)")
    parser.add_argument("--out", type=Path, default=Path("assets/codeberter"))
    parser.add_argument("--work", type=Path, default=Path(".cache/codeberter-train"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = Run(args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "all":
        for name in ENCODERS:
            stage_encoder(run, name)
        parts = stage_ner(run, args.out)
        stage_bug(run, args.out, True, parts)
        stage_bug(run, args.out, False)
        stage_finish(run, args.out)
    elif args.stage == "encoder":
        stage_encoder(run, args.encoder)
    elif args.stage == "ner":
        stage_ner(run, args.out)
    elif args.stage in ("bug-with", "bug-without"):
        stage_bug(run, args.out, args.stage == "bug-with", seeds=SEEDS if args.seed is None else (args.seed,))
    else:
        stage_finish(run, args.out)


if __name__ == "__main__":
    main()
