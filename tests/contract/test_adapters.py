"""The adapter contract, run over every registered paper through its `testing` module: identity at
start, adapter off = frozen model, frozen weights never change, the adapter state dict round-trips,
and the tiny model's device call is plain, picklable data."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from studio.device import check_plain
from tests.contract.conftest import spec_of


def _close(a, b, atol=1e-5):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return np.allclose(a, b, atol=atol, rtol=1e-4)


def test_fresh_adapter_leaves_the_frozen_model_unchanged(key, hooks):
    if not spec_of(key).identity_at_start:
        pytest.skip(f"{key}: the paper's adapter does not start as identity (see its SPEC)")
    bundle = hooks.tiny_bundle(seed=0)
    assert _close(hooks.output(bundle, adapter_on=True), hooks.frozen_output(bundle))


def test_adapter_off_equals_the_frozen_model_and_on_differs(key, hooks):
    bundle = hooks.tiny_bundle(seed=0)
    hooks.perturb_adapter(bundle, seed=1)
    frozen = hooks.frozen_output(bundle)
    assert _close(hooks.output(bundle, adapter_on=False), frozen)
    on = hooks.output(bundle, adapter_on=True)
    assert np.abs(np.asarray(on, dtype=np.float64) - np.asarray(frozen, dtype=np.float64)).max() > 1e-4, \
        f"{key}: a perturbed adapter changes nothing"


def test_a_training_step_moves_the_adapter_and_never_the_frozen_weights(key, hooks):
    bundle = hooks.tiny_bundle(seed=0)
    frozen_before = {n: t.detach().clone() for n, t in hooks.frozen_parameters(bundle).items()}
    adapter_before = {n: p.detach().clone() for n, p in hooks.adapter_parameters(bundle).items()}
    assert adapter_before, f"{key}: no adapter parameters"
    assert all(p.requires_grad for p in hooks.adapter_parameters(bundle).values())
    loss = hooks.training_step(bundle, seed=0)
    assert np.isfinite(loss)
    for name, before in frozen_before.items():
        assert torch.equal(hooks.frozen_parameters(bundle)[name], before), f"{key}: frozen {name} changed"
    after = hooks.adapter_parameters(bundle)
    moved = [n for n, before in adapter_before.items() if not torch.equal(after[n].detach(), before)]
    assert moved, f"{key}: the training step changed no adapter parameter"


def test_adapter_state_dict_round_trips(key, hooks):
    source = hooks.tiny_bundle(seed=0)
    hooks.perturb_adapter(source, seed=2)
    state = {k: v.detach().clone() for k, v in hooks.adapter_state_dict(source).items()}
    target = hooks.tiny_bundle(seed=0)
    hooks.load_adapter_state_dict(target, state)
    assert _close(hooks.output(target, adapter_on=True), hooks.output(source, adapter_on=True), atol=1e-6)


def test_tiny_inference_request_and_result_are_plain_and_pickle(key, hooks):
    import importlib

    inference = importlib.import_module(f"adapters.{key}.inference")
    bundle = hooks.tiny_bundle(seed=0)
    request = hooks.example_request()
    check_plain(request, f"{key} request")
    request = pickle.loads(pickle.dumps(request))
    seen = []
    result = inference.run(bundle, request, device=torch.device("cpu"), progress=lambda f, d: seen.append(f))
    check_plain(result, f"{key} result")
    pickle.loads(pickle.dumps(result))
    assert all(0.0 <= f <= 1.0 for f in seen)
