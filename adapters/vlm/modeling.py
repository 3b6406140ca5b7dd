"""A small LLaVA-style vision-language model on frozen parts.

frozen DINOv2-S/14 (224 px -> 16 x 16 patch tokens, final LayerNorm) -> average-pooled to
``grid`` x ``grid`` tokens -> `Projector` (Linear, GELU, Linear; the only trained part here) ->
image tokens spliced into frozen SmolLM2-135M-Instruct's input embeddings, at the start of the
first user message of its own chat template. Everything runs through ``inputs_embeds``, so the
LM's KV cache works as for text (speculative decoders can draft for it unchanged).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class ProjectorConfig:
    vision_dim: int = 384
    text_dim: int = 576
    hidden: int = 576
    grid: int = 4  # image tokens per side after pooling DINOv2's 16 x 16 patch grid

    @property
    def image_tokens(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict:
        return asdict(self)


class Projector(nn.Module):
    """LLaVA-1.5's projector: two linear layers with a GELU between them."""

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(config.vision_dim, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.text_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(pooled)))


def pool_patches(patches: torch.Tensor, grid: int) -> torch.Tensor:
    """B x N x C patch tokens on a square grid -> B x grid^2 x C by average pooling."""
    b, n, c = patches.shape
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    x = patches.transpose(1, 2).reshape(b, c, side, side)
    return F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)


@torch.no_grad()
def vision_patches(dino: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Frozen DINOv2: normalised B x 3 x 224 x 224 pixels -> B x 256 x 384 normalised patch tokens."""
    out = dino(pixel_values=pixels).last_hidden_state
    return out[:, 1:]


class ChatLayout:
    """Token ids of SmolLM2's chat template around an image and question/answer turns.

    ``<|im_start|>system ... <|im_end|> <|im_start|>user\\n [image] \\n question <|im_end|>
    <|im_start|>assistant\\n answer <|im_end|> ...``; the image slot holds `image_tokens` positions.
    """

    def __init__(self, tokenizer, system: str = DEFAULT_SYSTEM):
        self.tokenizer = tokenizer
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        enc = self._ids
        self.system = enc(f"<|im_start|>system\n{system}<|im_end|>\n")
        self.user = enc("<|im_start|>user\n")
        self.after_image = enc("\n")
        self.turn_end = enc("<|im_end|>\n<|im_start|>assistant\n")
        self.answer_end = enc("<|im_end|>\n")

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_ids(self, text: str) -> list[int]:
        """Plain text -> token ids, no special tokens."""
        return self._ids(text)

    def encode(self, turns, image_tokens: int, answer_last: bool = True):
        """(ids, image_slot, labels): ids with -1 placeholders at the image slot (None for no
        image), the slot's start index, and labels (-100 except on answer tokens and their
        ``<|im_end|>``). The last turn's answer may be None (a prompt waiting for it)."""
        ids = list(self.system) + list(self.user)
        slot = None
        if image_tokens:
            slot = len(ids)
            ids += [-1] * image_tokens + list(self.after_image)
        labels = [-100] * len(ids)
        for i, (question, answer) in enumerate(turns):
            q = (list(self.user) if i else []) + self._ids(question) + list(self.turn_end)
            ids += q
            labels += [-100] * len(q)
            if answer is not None:
                a = self._ids(answer) + [self.end_id]
                ids += a + self._ids("\n")
                labels += a + [-100]
        return ids, slot, labels


def splice(embed: nn.Module, ids: list[list[int]], slots, image_embeds: torch.Tensor | None):
    """B x T inputs_embeds: token embeddings with each row's image slot filled by its image
    tokens (rows of equal length; ``image_embeds`` B x K x D or None)."""
    t = torch.tensor([[max(i, 0) for i in row] for row in ids])
    x = embed(t)
    if image_embeds is not None:
        k = image_embeds.shape[1]
        rows = []
        for b, slot in enumerate(slots):
            if slot is None:
                rows.append(x[b])
            else:
                rows.append(torch.cat([x[b, :slot], image_embeds[b].to(x.dtype), x[b, slot + k:]]))
        x = torch.stack(rows)
    return x


def pad_batch(batch, pad_id: int):
    """Right-pad (ids, slot, labels) rows: ids, attention mask, labels as tensors."""
    width = max(len(r[0]) for r in batch)
    ids = [r[0] + [pad_id] * (width - len(r[0])) for r in batch]
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in batch])
    labels = torch.tensor([r[2] + [-100] * (width - len(r[2])) for r in batch])
    return ids, [r[1] for r in batch], mask, labels


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens only."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def answer_logits_loss(lm: nn.Module, inputs_embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                       **lm_kwargs) -> torch.Tensor:
    """`answer_loss` computing the LM head only where an answer token is predicted (the head is a
    fifth of SmolLM2's parameters and most positions are prompt)."""
    hidden = lm.model(inputs_embeds=inputs_embeds, attention_mask=mask, **lm_kwargs).last_hidden_state
    target = labels[:, 1:]
    where = target != -100
    logits = lm.lm_head(hidden[:, :-1][where])
    return F.cross_entropy(logits.float(), target[where])


@torch.no_grad()
def greedy(lm: nn.Module, inputs_embeds: torch.Tensor, mask: torch.Tensor, max_new: int, stop_id: int,
           on_token=None, first_logits: list | None = None) -> list[list[int]]:
    """Greedy decoding from left-padded prompt embeddings with the LM's KV cache.

    ``on_token(step, ids)`` is called with each step's B new ids (for streaming). Rows stop at
    ``stop_id`` (not included in the output). ``first_logits`` receives the B x V logits of the
    first answer token."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = lm(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    past, last = out.cache, positions[:, -1:]
    logits = out.logits[:, -1]
    if first_logits is not None:
        first_logits.append(logits.float())
    rows: list[list[int]] = [[] for _ in range(inputs_embeds.shape[0])]
    done = torch.zeros(inputs_embeds.shape[0], dtype=torch.bool)
    for step in range(max_new):
        nxt = logits.argmax(-1)
        for b, tok in enumerate(nxt.tolist()):
            if not done[b]:
                if tok == stop_id:
                    done[b] = True
                else:
                    rows[b].append(tok)
        if on_token is not None:
            on_token(step, nxt.tolist())
        if bool(done.all()) or step == max_new - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        last = last + 1
        out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=last, cache=past, use_cache=True)
        past, logits = out.cache, out.logits[:, -1]
    return rows


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """T_i x D embeddings -> B x T x D left-padded with zeros, and the attention mask."""
    width = max(r.shape[0] for r in rows)
    x = torch.zeros(len(rows), width, rows[0].shape[1], dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        x[b, width - r.shape[0]:] = r
        mask[b, width - r.shape[0]:] = 1
    return x, mask
