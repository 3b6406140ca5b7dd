"""The one tokenizer interface speculative decoding views need: ids in, ids out, readable pieces."""
from __future__ import annotations


class TextCodec:
    """The one tokenizer interface decoding needs: ids in, ids out, and readable pieces."""

    def __init__(self, encode, decode, bos_id: int | None, eos_id: int | None, chat=None):
        self._encode, self._decode, self._chat = encode, decode, chat
        self.bos_id, self.eos_id = bos_id, eos_id

    @property
    def has_chat(self) -> bool:
        return self._chat is not None

    def encode(self, text: str) -> list[int]:
        ids = list(self._encode(text))
        return ([self.bos_id] if self.bos_id is not None else []) + ids

    def encode_chat(self, text: str) -> list[int]:
        """`text` as a user message through the model's chat template, ready for the answer; plain
        `encode` for a model without one."""
        return list(self._chat(text)) if self._chat is not None else self.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._decode(list(ids))

    def pieces(self, prefix: list[int], new: list[int]) -> list[str]:
        """The text each new token adds after `prefix` (byte-level tokens may split a character,
        so pieces are differences of decoded prefixes rather than per-token decodes)."""
        out, previous = [], self.decode(prefix)
        for i in range(1, len(new) + 1):
            text = self.decode(prefix + new[:i])
            if text.startswith(previous):
                out.append(text[len(previous):])
            else:
                out.append(self.decode(new[i - 1: i]))
            previous = text
        return out


def hf_codec(tokenizer) -> TextCodec:
    chat = None
    if getattr(tokenizer, "chat_template", None):
        def chat(text: str) -> list[int]:
            return list(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                      tokenize=True, return_dict=False))
    # SmolLM2's bos and eos are its chat markers: plain text starts with no bos (as it was trained).
    bos = tokenizer.bos_token_id if tokenizer.bos_token not in ("<|im_start|>", "<|im_end|>") else None
    return TextCodec(
        lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        bos_id=bos,
        eos_id=tokenizer.eos_token_id,
        chat=chat,
    )
