"""A tiny real Kangaroo bundle (random 4-layer Llama, byte-level codec, fresh exit adapters) and the
hooks `tests/contract` calls."""
from __future__ import annotations

import numpy as np
import torch

from adapters.kangaroo.config import Request
from adapters.kangaroo.loading import KangarooBundle, freeze
from adapters.kangaroo.modeling import KangarooAdapter, adapter_logits, adapter_training_step, shallow_hidden_states
from adapters.speculative.codec import TextCodec

EXITS = (1, 2)
EOT = 256  # byte-level codec: bytes 0..255, then end-of-text
VOCAB = 257
OUTPUT_EXIT = 1  # the exit layer `output` reads


def byte_codec() -> TextCodec:
    return TextCodec(lambda text: list(text.encode("utf-8")),
                     lambda ids: bytes(i for i in ids if i < 256).decode("utf-8", errors="replace"),
                     bos_id=EOT, eos_id=EOT)


def tiny_bundle(seed: int = 0) -> KangarooBundle:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        # A random model is nearly uniform over its vocabulary; a larger final gain makes its
        # choices confident (as a trained model's are), so the threshold actually gates drafting.
        model.model.norm.weight.mul_(6.0)
    freeze(model)
    adapters = {k: KangarooAdapter(model, k) for k in EXITS}  # fresh: trainable, zero output projection
    return KangarooBundle(model, byte_codec(), adapters, "tiny random Llama")


def example_request() -> Request:
    return Request(prompt_ids=tuple(byte_codec().encode("def f(x):\n")), max_new_tokens=8, exit_layer=1,
                   threshold=0.0, gamma=3)


def adapter_parameters(bundle) -> dict[str, torch.nn.Parameter]:
    return {f"exit{k}.{n}": p for k, a in bundle.adapters.items() for n, p in a.named_parameters()}


def frozen_parameters(bundle) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bundle.model.named_parameters()}


def perturb_adapter(bundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in bundle.adapters.values():
            for p in adapter.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def output(bundle, adapter_on: bool) -> np.ndarray:
    """The draft's logits at exit layer 1 for every position of fixed ids (teacher forcing): through
    the adapter when on, the bare early exit (layers 1..k + final norm + head) when off."""
    hidden, _ = shallow_hidden_states(bundle.model, _ids())
    adapter = bundle.adapters[OUTPUT_EXIT] if adapter_on else None
    return adapter_logits(bundle.model, adapter, hidden[OUTPUT_EXIT]).double().numpy()


@torch.no_grad()
def frozen_output(bundle) -> np.ndarray:
    """The bare early exit through the frozen model alone: its own forward's hidden state after
    layer k, its final norm, its LM head; no Kangaroo code at all."""
    model = bundle.model
    hidden = model(_ids(), output_hidden_states=True).hidden_states[OUTPUT_EXIT]
    return model.lm_head(model.model.norm(hidden)).double().numpy()


def training_step(bundle, seed: int = 0) -> float:
    """One AdamW step of the real loss (soft-label cross-entropy of every exit's draft against the
    full model's next-token distribution, training/kangaroo/train.py); the mean loss over exits."""
    torch.manual_seed(seed)
    adapters = {k: a.train().requires_grad_(True) for k, a in bundle.adapters.items()}
    optimizer = torch.optim.AdamW([p for a in adapters.values() for p in a.parameters()], lr=1e-2, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (4, 24), generator=generator)
    losses = adapter_training_step(bundle.model, adapters, optimizer, ids, scored_positions=16, generator=generator)
    for adapter in adapters.values():
        adapter.eval()
    return float(sum(losses.values()) / len(losses))


def adapter_state_dict(bundle) -> dict:
    return {f"exit{k}.{n}": t.detach().clone() for k, a in bundle.adapters.items() for n, t in a.state_dict().items()}


def load_adapter_state_dict(bundle, state: dict) -> None:
    for k, adapter in bundle.adapters.items():
        prefix = f"exit{k}."
        adapter.load_state_dict({n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)})
