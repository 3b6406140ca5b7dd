"""Reproduce the Kangaroo tab's bundled weights: tokenizer, base language model, adapters.

    python -m training.kangaroo.train all --seed 0          # everything into assets/kangaroo/
    python -m training.kangaroo.train tokenizer|base|adapter|figures --seed 0
    python -m training.kangaroo.train adapter --base <hub id or dir> --out <dir>   # hub model

It writes assets/kangaroo/tokenizer.json, model.safetensors (+ model.json) and
kangaroo_adapter.safetensors, and records what only training can measure (CPU times, held-out
loss, the adapters' top-1 agreement) in assets/kangaroo/training_log.json, which the bench cites.
The `figures` stage runs `python -m bench.kangaroo --write`, the one writer of figures.json and
MODEL_CARD.md.

The base model is a small Llama trained on the Python standard library (see
`adapters/kangaroo/data.py`); the adapters (one per exit layer) are then trained with the base
model frozen, to match its next-token distribution. Base training is resumable: checkpoints go to
`training/checkpoints/kangaroo/` and a rerun continues from the last one. Every stage runs on one
CPU thread (the machine is shared) and reports its CPU time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' thread pool

import torch
import torch.nn.functional as F

from adapters.common.weights import read_bundled, save_bundled
from adapters.kangaroo import data as corpus
from adapters.kangaroo.config import BUNDLED_CONFIG
from adapters.kangaroo.loading import ADAPTER_FILE, END_OF_TEXT, bundled_codec, bundled_llama, freeze
from adapters.kangaroo.modeling import KangarooAdapter, adapter_training_step, load_adapters, save_adapters, top1_agreement

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "kangaroo"
CHECKPOINTS = REPO / "training" / "checkpoints" / "kangaroo"
DEFAULT_EXITS = (1, 2, 3, 4)


def cpu_seconds() -> float:
    return time.process_time()


# --- tokenizer ---------------------------------------------------------------------------------

def train_tokenizer(out: Path, vocab_size: int = BUNDLED_CONFIG["vocab_size"]) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    start = cpu_seconds()
    train_files, _ = corpus.split_files()
    texts = [t for t in (corpus.read_text(p) for p in train_files) if t]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return {"tokenizer_cpu_s": round(cpu_seconds() - start, 1), "tokenizer_train_files": len(texts)}


def token_stream(tokenizer_path: Path, files: list[Path]) -> torch.Tensor:
    codec = bundled_codec(tokenizer_path)
    ids: list[int] = []
    for path in files:
        text = corpus.read_text(path)
        if text:
            ids.extend(codec.encode(text))
    return torch.tensor(ids, dtype=torch.int32)


def cached_stream(split: str) -> torch.Tensor:
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINTS / f"tokens_{split}.pt"
    if path.is_file():
        return torch.load(path)
    train_files, heldout_files = corpus.split_files()
    stream = token_stream(ASSET_DIR / "tokenizer.json", train_files if split == "train" else heldout_files)
    torch.save(stream, path)
    return stream


def sample_windows(stream: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - length - 1, (batch,), generator=generator)
    return torch.stack([stream[s: s + length + 1] for s in starts.tolist()]).long()


# --- base model --------------------------------------------------------------------------------

def train_base(seed: int, steps: int, batch: int, length: int, lr: float, log_every: int = 50,
               stop_after: int | None = None) -> dict | None:
    torch.manual_seed(seed)
    stream = cached_stream("train")
    heldout = cached_stream("heldout")
    model = bundled_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt = CHECKPOINTS / f"base_seed{seed}.pt"
    step, cpu_used = 0, 0.0
    if ckpt.is_file():
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, cpu_used = state["step"], state["cpu_s"]
        print(f"resuming base training at step {step}")
    warmup = max(1, steps // 20)
    model.train()
    segment_start = cpu_seconds()
    while step < min(steps, stop_after or steps):
        # The batch depends on (seed, step) only, so a resumed run sees the same data.
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        windows = sample_windows(stream, batch, length, generator)
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        logits = model(windows[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % log_every == 0 or step == steps:
            used = cpu_used + cpu_seconds() - segment_start
            print(f"step {step}/{steps} lr {optimizer.param_groups[0]['lr']:.2e} loss {loss.item():.3f} cpu {used:.0f}s", flush=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "cpu_s": used}, ckpt)
    cpu_used += cpu_seconds() - segment_start
    if step < steps:
        print(f"stopped at step {step} as asked; rerun to continue")
        return None
    model.eval()
    # What ships is the fp16 copy: round now so every later figure describes the shipped model.
    tensors = {k: v.half() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_bundled(ASSET_DIR, tensors, {"llama_config": BUNDLED_CONFIG, "dtype": "float16"}, name="model")
    rounded = load_bundled_model_only()
    return {"base_cpu_s": round(cpu_used, 1), "base_steps": steps, "base_batch": batch, "base_seq_len": length,
            "base_lr": lr, "train_tokens": int(len(stream)), "heldout_tokens": int(len(heldout)),
            "base_tokens_seen": steps * batch * length,
            "heldout_loss": round(heldout_loss(rounded, heldout, seed), 4)}


def load_bundled_model_only():
    tensors, _ = read_bundled(ASSET_DIR, name="model")
    model = bundled_llama()
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    return freeze(model)


@torch.no_grad()
def heldout_loss(model, stream: torch.Tensor, seed: int, batches: int = 8, batch: int = 8, length: int = 256) -> float:
    generator = torch.Generator().manual_seed(seed + 99)
    total = 0.0
    for _ in range(batches):
        windows = sample_windows(stream, batch, length, generator)
        logits = model(windows[:, :-1]).logits
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)).item()
    return total / batches


# --- adapters ----------------------------------------------------------------------------------

def train_adapters(model, stream: torch.Tensor, exits, seed: int, steps: int, batch: int, length: int, lr: float,
                   log_every: int = 25, scored: int | None = 64, initial: dict | None = None,
                   first_batch: int = 0) -> tuple[dict, dict]:
    """Train one adapter per exit layer, all on the same batches (one frozen forward per batch).

    `initial` continues already trained adapters (fresh optimizer and schedule) on the batches
    numbered from `first_batch`, so a continuation sees batches the first run did not."""
    torch.manual_seed(seed)
    freeze(model)
    if initial is not None:
        adapters = {k: initial[k].train().requires_grad_(True) for k in exits}
    else:
        adapters = {k: KangarooAdapter(model, k).train() for k in exits}
    params = [p for a in adapters.values() for p in a.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    start = cpu_seconds()
    for step in range(steps):
        generator = torch.Generator().manual_seed(seed * 7_919 + 10_000_019 + first_batch + step)
        windows = sample_windows(stream, batch, length, generator)[:, :-1]
        scale = min(1.0, (step + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        losses = adapter_training_step(model, adapters, optimizer, windows, scored_positions=scored, generator=generator)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            text = " ".join(f"k{k}:{v:.3f}" for k, v in losses.items())
            print(f"adapter step {step + 1}/{steps} {text} cpu {cpu_seconds() - start:.0f}s", flush=True)
    for adapter in adapters.values():
        adapter.eval().requires_grad_(False)
    stats = {"adapter_cpu_s": round(cpu_seconds() - start, 1), "adapter_steps": steps, "adapter_batch": batch,
             "adapter_seq_len": length, "adapter_lr": lr, "exits": list(exits), "adapter_scored_positions": scored}
    return adapters, stats


def measure_agreement(model, adapters: dict, stream: torch.Tensor, seed: int, batches: int = 6, batch: int = 8,
                      length: int = 256) -> dict:
    """Top-1 agreement with the full model on held-out text: adapter draft vs bare early exit."""
    generator = torch.Generator().manual_seed(seed + 2024)
    windows = [sample_windows(stream, batch, length, generator)[:, :-1] for _ in range(batches)]
    rows = {}
    for k, adapter in sorted(adapters.items()):
        with_adapter = sum(top1_agreement(model, adapter, k, w) for w in windows) / batches
        bare = sum(top1_agreement(model, None, k, w) for w in windows) / batches
        rows[str(k)] = {"adapter_top1": round(with_adapter, 4), "bare_exit_top1": round(bare, 4)}
    return rows


def train_hub_adapters(base: str, out: Path, exits, seed: int, steps: int, batch: int, length: int, lr: float) -> dict:
    """Adapters for a transformers checkpoint (hub id or directory), trained on the standard
    library tokenised by that model's own tokenizer; writes `out/kangaroo_adapter.safetensors`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = freeze(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="sdpa"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    train_files, _ = corpus.split_files()
    ids: list[int] = []
    for path in train_files:
        text = corpus.read_text(path)
        if text:
            ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) > (steps + 1) * batch * length * 2:
            break
    adapters, stats = train_adapters(model, torch.tensor(ids), exits, seed, steps, batch, length, lr)
    save_adapters(out / ADAPTER_FILE, adapters, {"base": str(base), "seed": str(seed)})
    return stats


# --- figures and model card ------------------------------------------------------------------

def write_figures(quick: bool = False) -> None:
    """Run the bench on the bundled weights; it writes figures.json and renders MODEL_CARD.md from
    MODEL_CARD.template.md and the training log (no figure in the card is typed by hand)."""
    from bench.kangaroo import main as bench_main

    bench_main(["--write"] + (["--quick"] if quick else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("tokenizer", "base", "adapter", "adapter-more", "figures", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-steps", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--stop-after", type=int, help="base stage: stop (with a checkpoint) at this step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exits", default=",".join(str(k) for k in DEFAULT_EXITS), help="exit layers to train adapters for")
    parser.add_argument("--adapter-steps", type=int, default=800)
    parser.add_argument("--adapter-lr", type=float, default=2e-3)
    parser.add_argument("--quick", action="store_true", help="figures stage: the quick bench")
    parser.add_argument("--base", help="adapter stage only: a transformers model id or directory instead of the bundled model")
    parser.add_argument("--out", type=Path, help="with --base: where to write kangaroo_adapter.safetensors")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    log_path = ASSET_DIR / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    if args.stage in ("tokenizer", "all"):
        log.update(train_tokenizer(ASSET_DIR / "tokenizer.json"))
        for split in ("train", "heldout"):
            (CHECKPOINTS / f"tokens_{split}.pt").unlink(missing_ok=True)
    if args.stage in ("base", "all"):
        stats = train_base(args.seed, args.base_steps, args.batch, args.seq_len, args.lr, stop_after=args.stop_after)
        if stats is None:
            return
        log.update(stats)
    exits = tuple(int(k) for k in args.exits.split(","))
    if args.stage == "adapter" and args.base:
        stats = train_hub_adapters(args.base, args.out or Path(args.base), exits, args.seed, args.adapter_steps,
                                   args.batch, args.seq_len, args.adapter_lr)
        print(json.dumps(stats, indent=2))
        return
    if args.stage in ("adapter", "all"):
        model = load_bundled_model_only()
        adapters, stats = train_adapters(model, cached_stream("train"), exits, args.seed, args.adapter_steps,
                                         args.batch, args.seq_len, args.adapter_lr)
        save_adapters(ASSET_DIR / ADAPTER_FILE, adapters, {"base": "bundled", "seed": str(args.seed)})
        log.update(stats)
        log["agreement"] = measure_agreement(model, adapters, cached_stream("heldout"), args.seed)
    if args.stage == "adapter-more":
        # Continue the saved adapters of `--exits` for `--adapter-steps` more steps; the others stay as they are.
        model = load_bundled_model_only()
        adapters = load_adapters(ASSET_DIR / ADAPTER_FILE, model)
        continued = log.setdefault("adapter_continued", [])
        first = log.get("adapter_steps", 0) + sum(c["steps"] for c in continued)
        _, stats = train_adapters(model, cached_stream("train"), exits, args.seed, args.adapter_steps, args.batch,
                                  args.seq_len, args.adapter_lr, initial=adapters, first_batch=first)
        save_adapters(ASSET_DIR / ADAPTER_FILE, adapters, {"base": "bundled", "seed": str(args.seed)})
        continued.append({"exits": list(exits), "steps": args.adapter_steps, "lr": args.adapter_lr, "first_batch": first,
                          "cpu_s": stats["adapter_cpu_s"]})
        log["agreement"] = measure_agreement(model, adapters, cached_stream("heldout"), args.seed)
    log["seed"] = args.seed
    if args.stage in ("figures", "all"):
        log_path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")
        write_figures(quick=args.quick)
    log_path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")
    print(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
