"""Kangaroo (Liu et al., 2024): lossless self-speculative decoding with a double early exit."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="kangaroo",
    title="Kangaroo: faster decoding",
    paper="Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting (Liu et al., 2024)",
    paper_url="https://arxiv.org/abs/2404.18911",
    official_code="",
    frozen_model="Bundled: a 12-layer Llama trained here on the Python standard library; hub: any Llama-family causal LM",
    adapter="One attention layer between two norms on top of the first k layers; drafts tokens for the full model to verify",
    real=("The decoding, its check against plain greedy decoding and both timings are real and measured live; the "
          "bundled 3.1M-parameter Llama and its exit adapters were trained here on the Python standard library, so "
          "their code is plausible-looking but often wrong."),
    description=(
        "**Kangaroo: Lossless Self-Speculative Decoding via Double Early Exiting.** The language model is frozen. "
        "Its first *k* layers plus a small trained adapter (norm, one attention layer, norm) and the model's own "
        "output head guess the next few tokens; guessing stops early when the guess is unsure (the second exit); "
        "the remaining layers then check all guesses in one pass. The text is exactly what plain greedy decoding "
        "gives, which this tab checks on every request, while it times both. Green tokens were drafted and "
        "accepted, orange ones came from the full model."
    ),
    hub=(
        HubPart("frozen", "HuggingFaceTB/SmolLM2-135M", "frozen causal language model (any Llama-family model)"),
        HubPart("adapter", None, "Kangaroo exit adapter for SmolLM2-135M",
                unpublished=("the bundled exit adapters were trained for the bundled 12-layer model; none is "
                             "published for SmolLM2 (train one with `python -m training.kangaroo.train adapter "
                             "--base HuggingFaceTB/SmolLM2-135M --out <dir>`)")),
    ),
    # A fresh adapter is exactly the bare early exit: its output projection starts at zero (so the
    # attention adds nothing to the residual) and its last norm is a copy of the model's final norm.
    identity_at_start=True,
)
