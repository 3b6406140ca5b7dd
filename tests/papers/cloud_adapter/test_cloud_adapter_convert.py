"""The official-checkpoint converter, offline: a small checkpoint generated here in the official
mmseg key layout (DINOv2 in its original names, the PMAA context ConvNet, the low-rank
cross-attentions, Mask2Former head keys) goes through the hub code path (`load_hub` with
directories) and computes what the official forward computes, written out here independently
from the official code (fused qkv, layer scales, no final norm on the tapped tokens, the pooled
context resized to the token grid)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adapters.cloud_adapter import convert, loading
from adapters.common.weights import save_bundled
from adapters.dense.head import FPNHead

DIM, DEPTH, PATCH, IMAGE, HIDDEN, CTX, RANK, DIM_HEAD = 128, 4, 16, 64, 256, 8, 2, 4
INNER = convert.OFFICIAL_ADAPTER_HEADS * DIM_HEAD
TAPS = (0, 1, 2, 3)


def _conv_bn(prefix: str, in_ch: int, out_ch: int, k: int, groups: int, g: torch.Generator) -> dict:
    def bn(n):
        return {"weight": 1 + 0.1 * torch.randn(n, generator=g), "bias": 0.1 * torch.randn(n, generator=g),
                "running_mean": 0.1 * torch.randn(n, generator=g), "running_var": 1 + 0.1 * torch.rand(n, generator=g),
                "num_batches_tracked": torch.tensor(7)}
    out = {f"{prefix}.conv_dw.weight": 0.3 * torch.randn(in_ch, in_ch // groups, k, k, generator=g),
           f"{prefix}.conv_pw.weight": 0.3 * torch.randn(out_ch, in_ch, 1, 1, generator=g)}
    out |= {f"{prefix}.bn1.{k_}": v for k_, v in bn(in_ch).items()}
    out |= {f"{prefix}.bn2.{k_}": v for k_, v in bn(out_ch).items()}
    return out


def official_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.05 * torch.randn(*s, generator=g)  # noqa: E731
    grid = IMAGE // PATCH
    s = {"backbone.cls_token": r(1, 1, DIM), "backbone.pos_embed": r(1, 1 + grid * grid, DIM),
         "backbone.mask_token": torch.zeros(1, DIM), "backbone.patch_embed.proj.weight": r(DIM, 3, PATCH, PATCH),
         "backbone.patch_embed.proj.bias": r(DIM), "backbone.norm.weight": 1 + r(DIM), "backbone.norm.bias": r(DIM)}
    for i in range(DEPTH):
        b = f"backbone.blocks.{i}."
        s |= {b + "norm1.weight": 1 + r(DIM), b + "norm1.bias": r(DIM), b + "attn.qkv.weight": r(3 * DIM, DIM) * 4,
              b + "attn.qkv.bias": r(3 * DIM), b + "attn.proj.weight": r(DIM, DIM) * 4, b + "attn.proj.bias": r(DIM),
              b + "ls1.gamma": 1 + r(DIM), b + "norm2.weight": 1 + r(DIM), b + "norm2.bias": r(DIM),
              b + "mlp.fc1.weight": r(HIDDEN, DIM) * 4, b + "mlp.fc1.bias": r(HIDDEN),
              b + "mlp.fc2.weight": r(DIM, HIDDEN) * 4, b + "mlp.fc2.bias": r(DIM), b + "ls2.gamma": 1 + r(DIM)}
        n = f"backbone.cloud_adapter.net.{i}.attn."
        for name, (i_dim, o_dim) in {"to_q": (DIM, INNER), "to_k": (CTX, INNER), "to_v": (CTX, INNER), "to_out": (INNER, DIM)}.items():
            s[n + f"{name}.loramlp.0.weight"] = r(RANK, i_dim) * 10
            s[n + f"{name}.loramlp.1.weight"] = r(o_dim, RANK) * 10
    c = "backbone.cloud_adapter.cnn."
    s |= _conv_bn(c + "proj_1x1", 3, CTX, 1, 3, g)
    for k in range(3):  # stem + 2 stride-2 stages
        s |= _conv_bn(c + f"spp_dw.{k}", CTX, CTX, 3, 1, g)
    s["decode_head.query_embed.weight"] = r(100, 256)
    s["decode_head.transformer_decoder.layers.0.cross_attn.attn.in_proj_weight"] = r(768, 256)
    return s


def _bn(x, s, p):
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"], False, 0.0, 1e-5)


def _ds_conv(x, s, p, stride, groups, skip):
    y = F.conv2d(x, s[p + ".conv_dw.weight"], stride=stride, padding=s[p + ".conv_dw.weight"].shape[-1] // 2, groups=groups)
    y = _bn(F.conv2d(F.relu(_bn(y, s, p + ".bn1")), s[p + ".conv_pw.weight"]), s, p + ".bn2")
    return x + y if skip else y


def _low_rank(x, s, p):
    return x @ s[p + ".loramlp.0.weight"].T @ s[p + ".loramlp.1.weight"].T


def official_taps(s: dict, image: torch.Tensor) -> list[torch.Tensor]:
    """The official CloudAdapterDinoVisionTransformer.forward_features, written out."""
    pixels = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    c = "backbone.cloud_adapter.cnn."
    x0 = _ds_conv(pixels, s, c + "proj_1x1", 1, 3, False)
    levels = [_ds_conv(x0, s, c + "spp_dw.0", 1, 1, True)]
    for k in (1, 2):
        levels.append(_ds_conv(levels[-1], s, c + f"spp_dw.{k}", 2, 1, False))
    cache = sum(F.adaptive_avg_pool2d(t, levels[-1].shape[-2:]) for t in levels)
    b, grid = image.shape[0], IMAGE // PATCH
    patches = F.conv2d(pixels, s["backbone.patch_embed.proj.weight"], s["backbone.patch_embed.proj.bias"], stride=PATCH)
    x = torch.cat([s["backbone.cls_token"].expand(b, -1, -1), patches.flatten(2).transpose(1, 2)], 1) + s["backbone.pos_embed"]
    context = F.interpolate(cache, (grid, grid), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    heads = DIM // convert.DINO_HEAD_DIM
    outs = []
    for i in range(DEPTH):
        p = f"backbone.blocks.{i}."
        h = F.layer_norm(x, (DIM,), s[p + "norm1.weight"], s[p + "norm1.bias"], 1e-6)
        q, k, v = (h @ s[p + "attn.qkv.weight"].T + s[p + "attn.qkv.bias"]).chunk(3, -1)
        q, k, v = (t.reshape(b, -1, heads, DIM // heads).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (DIM // heads) ** 0.5, -1) @ v
        x = x + s[p + "ls1.gamma"] * (a.transpose(1, 2).reshape(b, -1, DIM) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"])
        h = F.layer_norm(x, (DIM,), s[p + "norm2.weight"], s[p + "norm2.bias"], 1e-6)
        h = F.gelu(h @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"]) @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"]
        x = x + s[p + "ls2.gamma"] * h
        n = f"backbone.cloud_adapter.net.{i}.attn."
        cls, tok = x[:, :1], x[:, 1:]
        hq = 8
        q = _low_rank(tok, s, n + "to_q").reshape(b, -1, hq, DIM_HEAD).transpose(1, 2)
        k = _low_rank(context, s, n + "to_k").reshape(b, -1, hq, DIM_HEAD).transpose(1, 2)
        v = _low_rank(context, s, n + "to_v").reshape(b, -1, hq, DIM_HEAD).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * DIM_HEAD ** -0.5, -1) @ v
        x = torch.cat([cls, tok + _low_rank(a.transpose(1, 2).reshape(b, -1, INNER), s, n + "to_out")], 1)
        if i in TAPS:
            outs.append(x[:, 1:].transpose(1, 2).reshape(b, DIM, grid, grid))
    return outs


@pytest.fixture
def official_dirs(tmp_path):
    state = official_state()
    ckpt_dir, head_dir = tmp_path / "official", tmp_path / "head"
    ckpt_dir.mkdir()
    torch.save({"meta": {"mmseg_version": "1.2.2", "classes": ["clear", "thick", "thin", "shadow"]}, "state_dict": state},
               ckpt_dir / loading.OFFICIAL_FILE)
    torch.manual_seed(3)
    head = FPNHead(DIM, 4, width=16)
    save_bundled(head_dir, {f"head.{k}": v for k, v in head.state_dict().items()}, {"head_width": 16, "n_classes": 4}, name="head")
    return state, ckpt_dir, head_dir, head


def test_converted_official_checkpoint_computes_the_official_forward(official_dirs):
    state, ckpt_dir, head_dir, head = official_dirs
    bundle = loading.load_hub({"official": str(ckpt_dir), "head": str(head_dir)})
    cfg = bundle.full.config
    assert (cfg.depth, cfg.rank, cfg.context_dim, cfg.context_depth, cfg.dim_head, cfg.image_size) == (DEPTH, RANK, CTX, 2, DIM_HEAD, IMAGE)
    assert bundle.checkpoint.endswith(loading.OFFICIAL_FILE) and "2 Mask2Former tensors not used" in bundle.frozen_name
    image = torch.rand(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = head.eval()(official_taps(state, image), (IMAGE, IMAGE))
        got = bundle.full(image)
        without = bundle.full(image, strength=0.0)
    assert torch.allclose(got, expected, atol=2e-4, rtol=1e-4), float((got - expected).abs().max())
    # the adapter really acts in this checkpoint: without it the logits move
    assert (without - expected).abs().max() > 1e-2


def test_converter_splits_qkv_in_order_and_keeps_the_head_out():
    state = official_state(1)
    out = convert.convert({"state_dict": state})
    qkv = state["backbone.blocks.2.attn.qkv.weight"]
    assert torch.equal(out.dino["encoder.layer.2.attention.k_proj.weight"], qkv[DIM:2 * DIM])
    assert torch.equal(out.dino["encoder.layer.2.layer_scale2.lambda1"], state["backbone.blocks.2.ls2.gamma"])
    assert out.skipped_head_keys == 2 and not any(k.startswith("decode_head") for k in out.adapter)


def test_a_file_that_is_not_a_cloud_adapter_checkpoint_is_refused():
    with pytest.raises(ValueError, match="not a Cloud-Adapter checkpoint"):
        convert.convert({"state_dict": {"encoder.weight": torch.zeros(1)}})
