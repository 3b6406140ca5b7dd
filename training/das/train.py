"""DAS on the small VLM: the skip search, then the replacing adapters of the chosen layers.

    python -m training.das.train features             # render scenes, cache frozen DINOv2-S patches
    python -m training.das.train search --seed 0      # skip scores + adapters (REINFORCE), resumable
    python -m training.das.train finetune --seed 0    # the top-k layers' adapters, resumable
    python -m training.das.train export --seed 0      # write assets/das from the last checkpoint
    python -m training.das.train all --seed 0 --search-stop-after 60   # the shipped files

Frozen: DINOv2-S, SmolLM2-135M-Instruct and the VLM's projector (assets/mma/vlm_projector.safetensors,
copied into assets/das next to the adapters it was trained with). Trained: one replacing adapter per
candidate layer (layers 1-29) and the per-layer skip scores.

Search (DAS): at every step a skip count k is taken in turn from (3, 6, 9, 12), a skip set of k layers
is drawn without replacement with weights sigmoid(score), those layers are replaced by their adapters
and the adapters take one AdamW step on the answer-only loss of a batch of training scenes. Every
`NAS_EVERY` steps after `WARMUP` steps, `CANDIDATES` distinct skip sets of one k (the rounds also take
3, 6, 9, 12 in turn) are drawn, each scored by exp(-loss) on a fixed validation batch of fresh
training-split scenes, and the scores move by `reinforce_update` against the candidates' mean reward.
Fine-tuning: the top-12 layers by skip probability are fixed (the top-k sets for k = 3, 6, 9, 12 are
nested within them) and their adapters train with k again taken in turn from (3, 6, 9, 12), the skip
set being the top-k.

One CPU thread, float32 (bfloat16 autocast ran about 40 times slower than float32 on a CPU without
native bfloat16, AVX2 only), a checkpoint every few minutes (SIGTERM stops after the current
step and saves); CPU seconds go to assets/das/das_training_log.json.

Files: assets/das/das_adapter.safetensors (skip scores and adapters) and
assets/das/vlm_projector.safetensors (the projector they were trained with, copied unchanged).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np
import torch

from adapters.das.config import KS, DASConfig
from adapters.das.loading import ADAPTER_FILE, save_das
from adapters.das.modeling import DAS, batch_loss, reinforce_update, sample_skip_set, skipping
from adapters.vlm.weights import PROJECTOR_FILE, load_projector
from training.vlm import train as vlm_train
from training.vlm.train import stop_on_signal

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "das"
VLM_PROJECTOR = REPO / "assets" / "mma" / PROJECTOR_FILE
LOG = ASSET_DIR / "das_training_log.json"
TRAIN_SCENES = 240
VAL_SCENES = 8  # the search's validation batch: fresh training-split scenes ("seen" split)
BATCH = 4
SEARCH_STEPS = 100
WARMUP = 10
NAS_EVERY = 2
CANDIDATES = 5
SCORE_LR = 5.0  # the official code uses 0.1 over thousands of rounds; here there are tens
FINETUNE_STEPS = 150
LR = 3e-3
FINE_TUNED = max(KS)
CPU_BUDGET_S = 40 * 60  # one thread of an AVX2-only CPU in float32; the issue allows 45


def cpu_seconds() -> float:
    return time.process_time()


def write_log(update: dict) -> None:
    log = json.loads(LOG.read_text()) if LOG.exists() else {}
    log.update(update)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(json.dumps(log, indent=1, sort_keys=True) + "\n")


def features(checkpoints: Path) -> None:
    """Frozen DINOv2-S patch tokens (float16) of the training scenes and the validation batch."""
    from adapters.vlm.modeling import vision_patches
    from adapters.zoo import load_dinov2_small

    torch.set_num_threads(1)
    checkpoints.mkdir(parents=True, exist_ok=True)
    start, computed = cpu_seconds(), False
    for split, n in (("train", TRAIN_SCENES), ("seen", VAL_SCENES)):
        path = checkpoints / f"patches_{split}.pt"
        if path.exists():
            continue
        if not computed:
            dino, prep = load_dinov2_small()
        computed = True
        chunks = []
        for lo in range(0, n, 16):
            pixels = torch.cat([prep(vlm_train.split_scene(split, i).image) for i in range(lo, min(n, lo + 16))])
            chunks.append(vision_patches(dino, pixels).half())
        torch.save(torch.cat(chunks), path)
    if computed:
        write_log({"features_cpu_s": round(cpu_seconds() - start, 1)})


class Trainer:
    """Everything both phases share: the model, the data, the optimiser and the checkpoint."""

    def __init__(self, seed: int, checkpoints: Path):
        from adapters.das.loading import wrap
        from adapters.vlm.model import VisionLanguageModel
        from adapters.zoo import load_smollm2

        torch.set_num_threads(1)
        torch.manual_seed(seed)
        lm, tokenizer = load_smollm2()
        self.vlm = VisionLanguageModel(lm, tokenizer, load_projector(VLM_PROJECTOR), None, None)
        self.bundle = wrap(self.vlm, DAS(DASConfig()), "training")
        self.das, self.layout, self.seed = self.bundle.das, self.vlm.layout, seed
        self.das.train()
        self.patches = torch.load(checkpoints / "patches_train.pt")
        self.val_patches = torch.load(checkpoints / "patches_seen.pt")[:VAL_SCENES]
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.layout.end_id
        self.k_image = self.vlm.image_tokens
        rng = np.random.default_rng([seed, 99])
        self.val_rows = [self._val_row(rng, i) for i in range(VAL_SCENES)]
        self.opt = torch.optim.AdamW(self.das.parameters(), lr=LR, weight_decay=0.0)
        self.path = checkpoints / f"das_seed{seed}.pt"
        self.record = {"search_step": 0, "finetune_step": 0, "cpu_s": 0.0, "losses": [], "val_losses": [],
                       "score_history": [], "fine_tuned": []}
        if self.path.exists():
            ckpt = torch.load(self.path)
            self.das.load_state_dict(ckpt["das"])
            self.opt.load_state_dict(ckpt["opt"])
            self.record = ckpt["record"]
            print(f"resumed: search {self.record['search_step']}, finetune {self.record['finetune_step']}", flush=True)
        self.start, self.last_save = cpu_seconds(), time.time()

    def _val_row(self, rng, i: int):
        scene = vlm_train.split_scene("seen", i)
        qa = [(q.question, q.answer) for q in scene.qa]
        return self.layout.encode([qa[j] for j in rng.permutation(len(qa))[:vlm_train.TURNS]], self.k_image)

    def cpu_used(self) -> float:
        return self.record["cpu_s"] + cpu_seconds() - self.start

    def save(self) -> None:
        self.record["cpu_s"] = self.cpu_used()
        self.start = cpu_seconds()
        torch.save({"das": self.das.state_dict(), "opt": self.opt.state_dict(), "record": self.record}, self.path)
        self.last_save = time.time()

    def maybe_save(self) -> None:
        if time.time() - self.last_save > 180:
            self.save()

    def image_embeds(self, patches: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.vlm.image_embeds(patches.float())

    def train_step(self, step: int, total: int, layers, lr_scale: float = 1.0) -> float:
        rng = np.random.default_rng([self.seed, step])
        index = rng.choice(len(self.patches), BATCH, replace=False)
        rows = [vlm_train.training_rows(rng, self.layout, int(i), self.k_image) for i in index]
        for group in self.opt.param_groups:
            group["lr"] = LR * lr_scale * min(1.0, (step + 1) / 5) * 0.5 * (1 + math.cos(math.pi * step / total))
        with skipping(self.bundle.state, layers, "adapters"):
            loss = batch_loss(self.bundle.lm, rows, self.pad, self.image_embeds(self.patches[torch.as_tensor(index)]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.das.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    @torch.no_grad()
    def val_loss(self, layers) -> float:
        with skipping(self.bundle.state, layers, "adapters"):
            return float(batch_loss(self.bundle.lm, self.val_rows, self.pad, self.image_embeds(self.val_patches)))


def search(trainer: Trainer, stop, stop_after: int | None = None) -> None:
    """The skip search; ``stop_after`` ends it early at that step of the SEARCH_STEPS-step schedule."""
    das, record = trainer.das, trainer.record
    candidates = torch.tensor(das.config.candidates)
    last = min(SEARCH_STEPS, stop_after or SEARCH_STEPS)
    while record["search_step"] < last and trainer.cpu_used() < CPU_BUDGET_S and not stop:
        step = record["search_step"]
        k = KS[step % len(KS)]
        generator = torch.Generator().manual_seed(trainer.seed * 100_003 + step)
        p = das.probabilities()[candidates]
        layers = tuple(int(candidates[i]) for i in sample_skip_set(p, k, generator))
        record["losses"].append(round(trainer.train_step(step, SEARCH_STEPS, layers), 4))
        if step >= WARMUP and (step - WARMUP) % NAS_EVERY == 0:
            k = KS[(step - WARMUP) // NAS_EVERY % len(KS)]  # the rounds take every k in turn too
            sets: list[tuple[int, ...]] = []
            while len(sets) < CANDIDATES:
                drawn = tuple(int(candidates[i]) for i in sample_skip_set(das.probabilities()[candidates], k, generator))
                if drawn not in sets:
                    sets.append(drawn)
            das.eval()
            losses = [trainer.val_loss(s) for s in sets]
            das.train()
            rewards = reinforce_update(das, sets, losses, SCORE_LR)
            record["val_losses"].append({"step": step, "k": k, "losses": [round(v, 4) for v in losses],
                                         "rewards": [round(r, 4) for r in rewards]})
            record["score_history"].append([round(float(s), 4) for s in das.scores])
        record["search_step"] = step + 1
        if (step + 1) % 5 == 0:
            print(f"search {step + 1} loss {np.mean(record['losses'][-5:]):.3f} top-6 {das.top_k(6)} "
                  f"cpu {trainer.cpu_used():.0f}s", flush=True)
        trainer.maybe_save()
    trainer.save()


def finetune(trainer: Trainer, stop) -> None:
    das, record = trainer.das, trainer.record
    if not record["fine_tuned"]:
        record["fine_tuned"] = list(das.top_k(FINE_TUNED))
    offset = SEARCH_STEPS
    while record["finetune_step"] < FINETUNE_STEPS and trainer.cpu_used() < CPU_BUDGET_S and not stop:
        step = record["finetune_step"]
        layers = das.top_k(KS[step % len(KS)])
        assert set(layers) <= set(record["fine_tuned"])
        record["losses"].append(round(trainer.train_step(offset + step, offset + FINETUNE_STEPS, layers), 4))
        record["finetune_step"] = step + 1
        if (step + 1) % 5 == 0:
            print(f"finetune {step + 1} loss {np.mean(record['losses'][-5:]):.3f} cpu {trainer.cpu_used():.0f}s",
                  flush=True)
        trainer.maybe_save()
    trainer.save()


def export(seed: int, checkpoints: Path) -> None:
    """Write the adapter file of the latest checkpoint, the projector it was trained with, and the log."""
    ckpt = torch.load(checkpoints / f"das_seed{seed}.pt")
    das = DAS(DASConfig())
    das.load_state_dict(ckpt["das"])
    record = ckpt["record"]
    info = {"seed": seed, "search_steps": record["search_step"], "finetune_steps": record["finetune_step"],
            "fine_tuned": record["fine_tuned"], "cpu_s": round(record["cpu_s"], 1)}
    save_das(das.eval(), ASSET_DIR / ADAPTER_FILE, info)
    shutil.copyfile(VLM_PROJECTOR, ASSET_DIR / PROJECTOR_FILE)
    losses = record["losses"]
    search_losses = losses[:record["search_step"]]
    tune_losses = losses[record["search_step"]:]
    write_log({f"seed{seed}": info | {
        "planned": {"search_steps": SEARCH_STEPS, "finetune_steps": FINETUNE_STEPS, "batch": BATCH,
                    "candidates": CANDIDATES, "nas_every": NAS_EVERY, "warmup": WARMUP, "score_lr": SCORE_LR,
                    "lr": LR, "train_scenes": TRAIN_SCENES, "val_scenes": VAL_SCENES},
        "threads": 1, "precision": "float32",
        "search_loss_first10": round(float(np.mean(search_losses[:10])), 3) if search_losses else None,
        "search_loss_last10": round(float(np.mean(search_losses[-10:])), 3) if search_losses else None,
        "finetune_loss_first10": round(float(np.mean(tune_losses[:10])), 3) if tune_losses else None,
        "finetune_loss_last10": round(float(np.mean(tune_losses[-10:])), 3) if tune_losses else None,
        "search_rounds": len(record["val_losses"]),
        "final_scores": [round(float(s), 4) for s in das.scores],
        "top_k": {str(k): list(das.top_k(k)) for k in KS},
    }})
    print(f"exported: search {record['search_step']}, finetune {record['finetune_step']} steps, "
          f"{record['cpu_s']:.0f} CPU s; top-k {[das.top_k(k) for k in KS]}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("features", "search", "finetune", "export", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-stop-after", type=int, default=None,
                        help="end the search at this step of its schedule (the shipped files: 60 of 100)")
    parser.add_argument("--checkpoints", type=Path, default=REPO / "training" / "checkpoints" / "das",
                        help="where the cached patches and the resumable checkpoint live")
    args = parser.parse_args(argv)
    if args.stage in ("features", "all"):
        features(args.checkpoints)
    if args.stage in ("search", "finetune", "all"):
        stop = stop_on_signal()
        trainer = Trainer(args.seed, args.checkpoints)
        if args.stage in ("search", "all"):
            search(trainer, stop, args.search_stop_after)
        if args.stage in ("finetune", "all") and not stop:
            finetune(trainer, stop)
    if args.stage in ("export", "all"):
        export(args.seed, args.checkpoints)


if __name__ == "__main__":
    main()
