"""Reproduce the ViSpec tab's bundled drafts for the small VLM (DINOv2-S + projector + SmolLM2-135M).

    python -m training.vispec.train data  --seed 0 --checkpoints DIR   # the target's own descriptions
    python -m training.vispec.train draft --seed 0 --checkpoints DIR   # vision-aware and text-only drafts
    python -m training.vispec.train export --checkpoints DIR            # assets/vispec/*.safetensors + log
    python -m training.vispec.train all   --seed 0 --checkpoints DIR   # the three in a row

The target is the VLM of assets/mma (its projector, copied next to the drafts as
vlm_projector.safetensors, is the one the drafts were trained against); nothing of it changes.
Data: `TRAIN_SCENES` synthetic training scenes (adapters/vlm/scenes.py), each asked one of four
"describe" questions; the target answers greedily (batched, up to `ANSWER_TOKENS`), and one
teacher-forced pass stores its last-layer features (after the final norm). Drafts: the ViSpec
draft (EAGLE layer + image adaptor, draft_vispec.safetensors) and the text-only EAGLE baseline
(the same without the adaptor, draft_eagle.safetensors), same seed, data order and schedule;
EAGLE's loss (smooth-L1 on the next feature + cross-entropy of the trimmed head) with a second
unrolled pass on the draft's own predictions. The trimmed head is the target's LM-head rows for
every token of the training answers (ranked by frequency). One CPU thread; every stage is
resumable (shards, checkpoints every few minutes) and records its CPU seconds in
assets/vispec/training_log.json, which the bench cites.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import torch

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "vispec"
SOURCE_PROJECTOR = REPO / "assets" / "mma" / "vlm_projector.safetensors"
PROJECTOR_FILE = "vlm_projector.safetensors"
VISION_FILE = "draft_vispec.safetensors"
TEXT_FILE = "draft_eagle.safetensors"
LOG_FILE = "training_log.json"
TRAIN_SCENES = 128
SHARD = 16
ANSWER_TOKENS = 64
DRAFT_VOCAB = 4096
INTERMEDIATE = 384  # the draft layer's MLP width (the target's is 1536): keeps each file under 8 MB in fp16
NUM_QUERIES = 4
EPOCHS = 24
BATCH = 8
LR = 1e-3
CE_WEIGHT = 0.3
SAVE_EVERY_S = 120


def cpu_seconds() -> float:
    return time.process_time()


def write_log(update: dict) -> None:
    path = ASSET_DIR / LOG_FILE
    log = json.loads(path.read_text()) if path.exists() else {}
    for key, value in update.items():
        log[key] = (log.get(key, {}) | value) if isinstance(value, dict) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_target(projector: Path):
    from adapters.vlm.model import load_vlm

    vlm = load_vlm(projector)
    vlm.lm.eval().requires_grad_(False)
    return vlm


def data(checkpoints: Path, seed: int, scenes: int = TRAIN_SCENES) -> None:
    from adapters.vispec.data import QUESTIONS, example
    from adapters.vlm.scenes import make_scene

    checkpoints.mkdir(parents=True, exist_ok=True)
    vlm = load_target(SOURCE_PROJECTOR)
    spent = 0.0
    for shard in range(math.ceil(scenes / SHARD)):
        path = checkpoints / f"data_seed{seed}_{shard:03d}.pt"
        if path.exists():
            continue
        start = cpu_seconds()
        seeds = range(shard * SHARD, min(scenes, (shard + 1) * SHARD))
        chosen = [make_scene(seed * 100_000 + s, "train") for s in seeds]
        patches = [vlm.image_patches(s.image) for s in chosen]
        questions = [QUESTIONS[s % len(QUESTIONS)] for s in seeds]
        answers = vlm.answer(questions, patches, max_new=ANSWER_TOKENS)
        rows = []
        for q, p, a in zip(questions, patches, answers):
            ended = len(a) < ANSWER_TOKENS
            rows.append(example(vlm, q, p, list(a) + ([vlm.layout.end_id] if ended else [])))
        tmp = path.with_suffix(".tmp")
        torch.save({k: [r[k] for r in rows] for k in rows[0]}, tmp)
        tmp.replace(path)
        spent += cpu_seconds() - start
        print(f"data shard {shard}: {len(rows)} sequences, {cpu_seconds() - start:.0f} CPU s", flush=True)
    # CPU seconds of this data set (all its shards, over every resumed run), kept next to the shards
    tally = checkpoints / f"data_seed{seed}_cpu.json"
    total = (json.loads(tally.read_text())["cpu_seconds"] if tally.exists() else 0.0) + spent
    tally.write_text(json.dumps({"cpu_seconds": total}))
    write_log({"data": {"cpu_seconds": round(total, 1), "scenes": scenes, "answer_tokens": ANSWER_TOKENS,
                        "projector_sha256": sha256(SOURCE_PROJECTOR)}})


def load_examples(checkpoints: Path, seed: int) -> list[dict]:
    out = []
    for path in sorted(checkpoints.glob(f"data_seed{seed}_*.pt")):
        shard = torch.load(path)
        out += [{k: shard[k][i] for k in shard} for i in range(len(shard["ids"]))]
    return out


def draft_vocab(examples: list[dict], end_id: int) -> torch.Tensor:
    counts = Counter()
    for ex in examples:
        counts.update(ex["ids"][ex["answer_start"]:].tolist())
    counts[end_id] += 1
    return torch.tensor([t for t, _ in counts.most_common(DRAFT_VOCAB)], dtype=torch.long)


def draft(checkpoints: Path, seed: int, variant: str, epochs: int = EPOCHS) -> None:
    from adapters.vispec.modeling import ViSpecDraft, config_for, draft_loss, vocab_index

    vlm = load_target(SOURCE_PROJECTOR)
    lm = vlm.lm
    examples = load_examples(checkpoints, seed)
    vocab = draft_vocab(examples, vlm.layout.end_id)
    index = vocab_index(vocab, lm.config.vocab_size)
    head_t = lm.lm_head.weight[vocab].t().contiguous()
    torch.manual_seed(seed)
    model = ViSpecDraft(config_for(lm, variant == "vision", INTERMEDIATE, NUM_QUERIES)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(examples) / BATCH)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    path = checkpoints / f"draft_{variant}_seed{seed}.pt"
    state = {"step": 0, "cpu_seconds": 0.0, "losses": []}
    if path.exists():
        saved = torch.load(path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]

    def save():
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "state": state, "vocab": vocab}, tmp)
        tmp.replace(path)

    start, saved_at = cpu_seconds(), time.time()
    while state["step"] < total:
        step = state["step"]
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed * 1000 + step // steps_per_epoch))
        batch = order[(step % steps_per_epoch) * BATCH: (step % steps_per_epoch + 1) * BATCH]
        optimizer.zero_grad()
        loss_sum = 0.0
        for i in batch.tolist():
            loss = draft_loss(model, lm, head_t, index, examples[i], CE_WEIGHT) / len(batch)
            loss.backward()
            loss_sum += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        state["step"] = step + 1
        state["losses"].append(loss_sum)
        if state["step"] % steps_per_epoch == 0:
            print(f"{variant} epoch {state['step'] // steps_per_epoch}/{epochs}: loss "
                  f"{sum(state['losses'][-steps_per_epoch:]) / steps_per_epoch:.4f}", flush=True)
        if time.time() - saved_at > SAVE_EVERY_S:
            state["cpu_seconds"] += cpu_seconds() - start
            start, saved_at = cpu_seconds(), time.time()
            save()
    state["cpu_seconds"] += cpu_seconds() - start
    save()


def export(checkpoints: Path, seed: int) -> None:
    from adapters.vispec.modeling import ViSpecDraft, config_for, save_draft

    vlm = load_target(SOURCE_PROJECTOR)
    ASSET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE_PROJECTOR, ASSET_DIR / PROJECTOR_FILE)
    record = {}
    for variant, name in (("vision", VISION_FILE), ("text", TEXT_FILE)):
        saved = torch.load(checkpoints / f"draft_{variant}_seed{seed}.pt")
        model = ViSpecDraft(config_for(vlm.lm, variant == "vision", INTERMEDIATE, NUM_QUERIES))
        model.load_state_dict(saved["model"])
        save_draft(model, saved["vocab"], ASSET_DIR / name, {"seed": str(seed), "projector_sha256": sha256(SOURCE_PROJECTOR)})
        losses = saved["state"]["losses"]
        record[variant] = {"cpu_seconds": round(saved["state"]["cpu_seconds"], 1), "steps": saved["state"]["step"],
                           "final_loss": round(sum(losses[-16:]) / max(1, len(losses[-16:])), 4),
                           "first_loss": round(sum(losses[:16]) / max(1, len(losses[:16])), 4), "seed": seed}
    write_log({"drafts": record, "settings": {"epochs": EPOCHS, "batch": BATCH, "lr": LR, "ce_weight": CE_WEIGHT,
                                              "intermediate": INTERMEDIATE, "queries": NUM_QUERIES,
                                              "draft_vocab": DRAFT_VOCAB, "threads": 1}})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("data", "draft", "export", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=("vision", "text", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--scenes", type=int, default=TRAIN_SCENES)
    parser.add_argument("--checkpoints", type=Path, default=REPO / "training" / "checkpoints" / "vispec")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.stage in ("data", "all"):
        data(args.checkpoints, args.seed, args.scenes)
    if args.stage in ("draft", "all"):
        for variant in (("vision", "text") if args.variant == "both" else (args.variant,)):
            draft(args.checkpoints, args.seed, variant, args.epochs)
    if args.stage in ("export", "all"):
        export(args.checkpoints, args.seed)


if __name__ == "__main__":
    main()
