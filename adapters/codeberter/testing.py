"""A tiny real CodeBERTER bundle (a random 2-layer BERT with MiniLM's real tokenizer, fresh adapters)
and the hooks `tests/contract` calls."""
from __future__ import annotations

import numpy as np
import torch

from adapters.codeberter.config import MAX_CHARS, MAX_LEN, Request
from adapters.codeberter.data import encode, windows
from adapters.codeberter.labels import python_tokens
from adapters.codeberter.loading import CodeBundle, fresh_parts
from adapters.codeberter.modeling import FrozenEncoder, type_batch, type_loss

CODE = '''import os

def join_all(parts, sep=","):
    """Join the parts."""
    total = 0  # running length
    for part in parts:
        total = total + len(part)
    return sep.join(parts) if total > 0 else os.sep
'''


def tokenizer():
    from adapters.zoo import minilm

    return minilm.load_minilm()[1]


def tiny_bundle(seed: int = 0) -> CodeBundle:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = tokenizer()
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=MAX_LEN + 2)
    model = BertModel(config, add_pooling_layer=False).eval().requires_grad_(False)
    encoder = FrozenEncoder(model, "bert", pad_id=tok.pad_token_id)
    ner, type_head, probe_head, bug = fresh_parts(32, encoder.num_layers, bottleneck=8)
    return CodeBundle(encoder, tok, ner, type_head, probe_head, bug, "tiny random BERT")


def example_request() -> Request:
    return Request(CODE, 1.0)


def _batch(bundle):
    examples = [encode(bundle.tokenizer, text, inside, MAX_LEN)
                for text, inside in windows(CODE, python_tokens(CODE), MAX_CHARS // 4)]
    return type_batch(examples, bundle.encoder.info.pad_id)


def adapter_parameters(bundle) -> dict[str, torch.nn.Parameter]:
    return {**{f"adapter.{n}": p for n, p in bundle.ner.named_parameters()},
            **{f"type_head.{n}": p for n, p in bundle.type_head.named_parameters()}}


def frozen_parameters(bundle) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bundle.encoder.model.named_parameters()}


def perturb_adapter(bundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bundle.ner.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))


@torch.no_grad()
def output(bundle, adapter_on: bool) -> np.ndarray:
    """The encoder's per-token features on fixed code, through the NER adapter when on."""
    ids, mask, _ = _batch(bundle)
    stack = [(bundle.ner, 1.0)] if adapter_on else []
    return bundle.encoder.hidden(ids, mask, stack).double().numpy()


@torch.no_grad()
def frozen_output(bundle) -> np.ndarray:
    """The frozen BERT's own forward, no adapter code path at all."""
    ids, mask, _ = _batch(bundle)
    return bundle.encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state.double().numpy()


def training_step(bundle, seed: int = 0) -> float:
    """One AdamW step of the token-type cross-entropy (training/codeberter/train.py's NER loss)."""
    torch.manual_seed(seed)
    params = list(adapter_parameters(bundle).values())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    ids, mask, labels = _batch(bundle)
    loss = type_loss(bundle.encoder, bundle.type_head, [(bundle.ner, 1.0)], ids, mask, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def adapter_state_dict(bundle) -> dict:
    return {k: v.detach().clone() for k, v in {**{f"adapter.{n}": t for n, t in bundle.ner.state_dict().items()},
                                               **{f"type_head.{n}": t for n, t in bundle.type_head.state_dict().items()}}.items()}


def load_adapter_state_dict(bundle, state: dict) -> None:
    bundle.ner.load_state_dict({k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")})
    bundle.type_head.load_state_dict({k[len("type_head."):]: v for k, v in state.items() if k.startswith("type_head.")})
