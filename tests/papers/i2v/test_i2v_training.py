"""The bundled-model training script: seeded, and an interrupted stage resumes to the very same
weights as an uninterrupted one."""
from __future__ import annotations

import pytest
import torch

from training.i2v import train as train_i2v


class Interrupted(RuntimeError):
    """Stands in for a killed run."""


def run_vae_stage(monkeypatch, root, crash_after=None):
    monkeypatch.setattr(train_i2v, "CHECKPOINTS", root / "ck")
    monkeypatch.setattr(train_i2v, "OUT", root / "out")
    monkeypatch.setattr(train_i2v, "STEPS", dict(train_i2v.STEPS, vae=4))
    monkeypatch.setattr(train_i2v, "BATCH", dict(train_i2v.BATCH, vae=8))
    monkeypatch.setattr(train_i2v, "CHECKPOINT_EVERY_S", 0)  # save after every step
    from adapters.i2v.photos import clip_batch as real
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if crash_after is not None and calls["n"] > crash_after:
            raise Interrupted("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_i2v, "clip_batch", flaky)
    train_i2v.train(seed=0, stages=["vae"])


def test_interrupted_stage_resumes_to_identical_weights(monkeypatch, tmp_path):
    run_vae_stage(monkeypatch, tmp_path / "straight")
    with pytest.raises(Interrupted):
        # one draw starts the VAE's linear code, then one per step: killed during step 3
        run_vae_stage(monkeypatch, tmp_path / "interrupted", crash_after=3)
    halfway = torch.load(tmp_path / "interrupted" / "ck" / "vae.pt", weights_only=True)
    assert halfway["step"] == 2
    run_vae_stage(monkeypatch, tmp_path / "interrupted")  # resumes at step 2
    a = torch.load(tmp_path / "straight" / "ck" / "vae.pt", weights_only=True)
    b = torch.load(tmp_path / "interrupted" / "ck" / "vae.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert a["losses"] == b["losses"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    initial = train_i2v.new_components(0, tmp_path / "straight" / "out" / "tokenizer")["vae"].state_dict()
    assert any(not torch.equal(initial[k], a["model"][k]) for k in initial)  # it did train
