"""ViSpec on the tiny random VLM (fast): speculative output equals plain greedy on every request, the
draft's incremental decoding equals its teacher-forced forward, the image adaptor's place in the
draft's sequence, the official key layout, training reduces the loss, and the tab's request checks.

Losslessness is checked in float64, where summation order cannot flip an argmax."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from adapters.speculative.engine import FeatureDrafter, feature_speculative_decode, greedy_decode
from adapters.vispec import testing
from adapters.vispec.config import MAX_DRAFT_TOKENS, make_request
from adapters.vispec.data import example, prompt
from adapters.vispec.modeling import (
    ViSpecDraft,
    ViSpecDrafter,
    config_for,
    draft_loss,
    load_draft,
    rope,
    save_draft,
    vocab_index,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle():
    b = testing.tiny_bundle(0)
    testing.perturb_adapter(b, 3)
    return b


@pytest.fixture(scope="module")
def prompts(bundle):
    vlm = bundle.vlm
    out = []
    for seed, question in zip(range(3), ("Describe the picture.", "What is here?", "Tell me everything.")):
        embeds, mask, _ = prompt(vlm, question, vlm.image_patches(testing.picture(seed)))
        out.append((embeds.double(), mask))
    return out


def double(bundle):
    bundle.vlm.lm.double()
    for d in bundle.drafts.values():
        d.double()


def test_speculative_output_equals_greedy_for_every_draft_and_length(bundle, prompts):
    double(bundle)
    try:
        lm, end = bundle.vlm.lm, bundle.vlm.layout.end_id
        for (embeds, mask), which, gamma in itertools.product(prompts, ("vision", "text"), (1, 3, MAX_DRAFT_TOKENS)):
            greedy = greedy_decode(lm, None, 24, eos_id=end, prompt_embeds=embeds)
            drafter = ViSpecDrafter(bundle.drafts[which], bundle.vocab[which].clone())
            out = feature_speculative_decode(lm, drafter, None, 24, gamma=gamma, eos_id=end, prompt_embeds=embeds,
                                             image_mask=mask)
            assert out.tokens == greedy.tokens, (which, gamma)
            assert len(out.sources) == len(out.tokens) and out.drafted >= out.accepted
            assert out.sources.count("draft") == out.accepted
    finally:
        bundle.vlm.lm.float()
        for d in bundle.drafts.values():
            d.float()


class OracleDrafter(FeatureDrafter):
    """Proposes the known greedy continuation, wrong at every `wrong_every`-th token: exercises
    acceptance, rejection and the drafter's commit/rollback bookkeeping in the engine."""

    def __init__(self, truth: list[int], wrong_every: int, vocab: int):
        self.truth, self.wrong_every, self.vocab = truth, wrong_every, vocab
        self.calls = {"extend": [], "step": 0, "rollback": 0}

    def start(self, prompt_embeds, features, image_mask, next_embed):
        self.at = 1  # the first token came from the prefill
        return features[:, -1:]

    def extend(self, embeds, features, position):
        self.calls["extend"].append((embeds.shape[1], position))
        self.at = position - self.base + embeds.shape[1] + 1
        return features[:, -1:]

    def step(self, embed, feature, position):
        self.calls["step"] += 1
        self.at += 1
        return feature

    def rollback(self):
        self.calls["rollback"] += 1

    def propose(self, feature):
        i = self.at
        token = self.truth[i] if i < len(self.truth) else 0
        if i % self.wrong_every == 0:
            token = (token + 1) % self.vocab
        return 1.0, token


def test_engine_accepts_right_drafts_and_corrects_wrong_ones(bundle, prompts):
    lm, end = bundle.vlm.lm, bundle.vlm.layout.end_id
    embeds, mask = prompts[0]
    embeds = embeds.float()
    greedy = greedy_decode(lm, None, 30, prompt_embeds=embeds)
    drafter = OracleDrafter(greedy.tokens, wrong_every=7, vocab=lm.config.vocab_size)
    drafter.base = embeds.shape[0]
    out = feature_speculative_decode(lm, drafter, None, 30, gamma=4, prompt_embeds=embeds, image_mask=mask)
    assert out.tokens == greedy.tokens
    assert out.accepted >= 12 and out.tokens_per_pass > 2.0  # most drafts are right, and each pass commits several
    assert out.drafted > out.accepted  # and the wrong ones were refused
    # each round commits exactly the accepted drafts plus the full model's token, at the right position
    positions = [p for _, p in drafter.calls["extend"]]
    assert positions == sorted(positions) and positions[0] == embeds.shape[0]
    assert end not in out.tokens[:-1]


def test_incremental_drafting_equals_the_teacher_forced_draft(bundle):
    """start + extend (pairs of true features) give the same predicted features as the draft's
    teacher-forced forward over the whole sequence: the folded input projection, the draft's KV
    cache and the positions are right."""
    vlm = bundle.vlm
    ex = example(vlm, testing.QUESTION, vlm.image_patches(testing.picture()), testing.ANSWER)
    draft = bundle.drafts["vision"]
    with torch.no_grad():
        rows, positions, pair = draft.sequence_rows(ex["embeds"], ex["features"], ex["image_mask"])
        cos, sin = rope(vlm.lm, positions)
        teacher = draft.forward_rows(rows, cos, sin)
    start = ex["answer_start"]
    from adapters.speculative.engine import LayerRunner

    runner = LayerRunner(vlm.lm, 512)
    drafter = ViSpecDrafter(draft, None)
    drafter.bind(runner, 512)
    with torch.no_grad():
        first = drafter.start(ex["embeds"][None, :start], ex["features"][None, :start], ex["image_mask"][:start],
                              ex["embeds"][None, start: start + 1])
        later = drafter.extend(ex["embeds"][None, start + 1: start + 6], ex["features"][None, start: start + 5], start)
    row_of = {int(t): i for i, t in enumerate(pair.tolist())}
    assert torch.allclose(first[0, 0], teacher[row_of[start - 1]], atol=1e-5)
    assert torch.allclose(later[0, 0], teacher[row_of[start + 4]], atol=1e-5)


def test_image_adaptor_rows_take_the_image_place_and_text_only_leaves_it_out(bundle):
    vlm = bundle.vlm
    ex = example(vlm, testing.QUESTION, vlm.image_patches(testing.picture()), testing.ANSWER)
    n, k = len(ex["ids"]), int(ex["image_mask"].sum())
    queries = bundle.drafts["vision"].config.num_queries
    with torch.no_grad():
        rows, positions, pair = bundle.drafts["vision"].sequence_rows(ex["embeds"], ex["features"], ex["image_mask"])
        rows_text, positions_text, _ = bundle.drafts["text"].sequence_rows(ex["embeds"], ex["features"], ex["image_mask"])
    assert rows.shape[0] == (n - 1) - k + (queries - 1)
    assert rows_text.shape[0] == (n - 1) - k
    assert int((pair == -1).sum()) == queries - 1
    assert bool((positions[1:] > positions[:-1]).all())
    last_image = int(torch.nonzero(ex["image_mask"]).max())
    assert positions[pair == -1].tolist() == list(range(last_image - queries + 1, last_image))


def test_fusion_starts_at_zero_so_only_the_adaptor_rows_differ_at_the_start():
    b = testing.tiny_bundle(1)
    draft = b.drafts["vision"]
    f = torch.randn(5, draft.config.hidden_size)
    assert torch.equal(draft.fuse(f, torch.randn(draft.config.hidden_size)), f)


def test_file_round_trip_and_official_key_layout(tmp_path, bundle):
    draft = bundle.drafts["vision"]
    keys = set(draft.state_dict())
    official = {"fc.weight", "fc.bias", "img_fc.weight", "img_fc.bias", "imadpt.q", "imadpt.k_proj.weight",
                "imadpt.v_proj.weight", "imadpt.o_proj.weight", "layers.0.self_attn.q_proj.weight",
                "layers.0.self_attn.o_proj.weight", "layers.0.mlp.gate_proj.weight", "layers.0.mlp.down_proj.weight",
                "layers.0.post_attention_layernorm.weight"}
    assert official <= keys and not any("input_layernorm" in k for k in keys)
    path = tmp_path / "draft.safetensors"
    save_draft(draft, bundle.vocab["vision"], path, dtype=torch.float32)
    loaded, vocab = load_draft(path)
    assert torch.equal(vocab, bundle.vocab["vision"])
    for k, v in draft.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_training_reduces_the_loss_on_the_targets_own_answer():
    b = testing.tiny_bundle(2)
    vlm = b.vlm
    patches = vlm.image_patches(testing.picture(2))
    embeds, _, _ = prompt(vlm, testing.QUESTION, patches)
    answer = greedy_decode(vlm.lm, None, 24, prompt_embeds=embeds).tokens
    ex = example(vlm, testing.QUESTION, patches, answer)
    vocab = torch.arange(vlm.lm.config.vocab_size)
    head_t, index = vlm.lm.lm_head.weight[vocab].t(), vocab_index(vocab, vlm.lm.config.vocab_size)
    torch.manual_seed(0)
    draft = ViSpecDraft(config_for(vlm.lm, True, 48))
    optimizer = torch.optim.AdamW(draft.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = draft_loss(draft, vlm.lm, head_t, index, ex)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_requests_are_checked_before_any_device_work():
    img = testing.picture()
    ok = make_request(img, " Describe it. ", 16, 4, "text", False)
    assert ok.question == "Describe it." and ok.draft == "text" and not ok.use_draft
    for args, words in [((None, "q", 16, 4, "vision"), "No picture"),
                        ((img, "", 16, 4, "vision"), "question is empty"),
                        ((img, "q", 0, 4, "vision"), "Max new tokens"),
                        ((img, "q", 16.5, 4, "vision"), "Max new tokens"),
                        ((img, "q", 16, 99, "vision"), "Draft tokens"),
                        ((img, "q", 16, 4, "both"), "Choose the draft"),
                        ((img.astype(np.float32), "q", 16, 4, "vision"), "RGB")]:
        with pytest.raises(BadInput, match=words):
            make_request(*args)
