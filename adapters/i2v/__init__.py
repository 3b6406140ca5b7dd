"""I2V-Adapter (image to video): what the paper is and where its real model lives. Strings only."""
from __future__ import annotations

from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="i2v",
    title="Image to video",
    paper="I2V-Adapter: A General Image-to-Video Adapter for Diffusion Models (Guo et al., 2023)",
    paper_url="https://arxiv.org/abs/2312.16693",
    official_code="",
    frozen_model=("Text-to-image UNet + AnimateDiff motion module (bundled: tiny models trained here; hub: Stable "
                  "Diffusion 1.5 + animatediff-motion-adapter-v1-5-2 + IP-Adapter)"),
    adapter=("A first-frame attention branch (new query + zero-initialised output projection) in every spatial "
             "self-attention"),
    real=("bundled: tiny VAE, text encoder, UNet and motion module trained here on videos made from real photographs "
          "(scikit-image, scikit-learn and matplotlib sample photos: camera pans and zooms, cut-out objects over other "
          "photos; 64x64, 8 frames; three photos held out); the motion is synthetic (rigid warps of still photos). hub: "
          "Stable Diffusion 1.5, the AnimateDiff motion adapter, IP-Adapter and the official I2V-Adapter weights."),
    description=(
        "**I2V-Adapter** animates one still image without touching the text-to-image model or its motion "
        "module: a parallel branch in each spatial self-attention lets every frame look at the first frame "
        "(new query and output projections; keys and values from the frozen layers), the first frame stays "
        "the clean input at every step, and sampling starts from the *Frame Similarity Prior*, a blurred and "
        "noised copy of the first frame. One **motion strength** slider sets where on the noise schedule "
        "sampling starts, the prior's blur and the branch's scale. The bundled models are tiny and trained here "
        "at 64x64 on camera moves over real photographs (pans, zooms, cut-out objects; the motion itself is "
        "synthetic): describe the move, e.g. \"the scene moves left slowly\" or \"zoom in slowly\". Every figure "
        "below is measured on photographs held out of training: motion strength raises the measured motion on "
        "every one of them (about 2.3x from 0 to 1), while which way things move does not follow the direction "
        "words yet. The **Extrapolate and decouple** section (EDG, CVPR 2025) adds a text path to the motion "
        "module, fine-tuned here, and merges it with the pretrained one on the fly; on these tiny models it does "
        "not make the direction follow the prompt either (figures below)."
    ),
    hub=(
        HubPart("frozen", "stable-diffusion-v1-5/stable-diffusion-v1-5", "Stable Diffusion 1.5 text-to-image model",
                local_subdir="stable-diffusion"),
        HubPart("motion", "guoyww/animatediff-motion-adapter-v1-5-2", "AnimateDiff motion module",
                local_subdir="motion-adapter"),
        HubPart("ip_adapter", "h94/IP-Adapter", "IP-Adapter image prompt (optional in a local directory)",
                local_subdir="ip-adapter"),
        HubPart("adapter", "space-xun/i2v_adapter", "I2V-Adapter weights (i2v_module.pth)", local_subdir=""),
    ),
    identity_at_start=True,
)
