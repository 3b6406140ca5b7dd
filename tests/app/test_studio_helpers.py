"""Device handling and the UI helpers every tab uses."""
from __future__ import annotations

import dataclasses
import threading

import gradio as gr
import numpy as np
import pytest
import torch

from adapters.common.errors import BadInput
from studio import device, settings, ui
from studio.loader import ModelSourceError


def test_device_call_is_transparent_and_pickles_when_checking(monkeypatch):
    calls = []

    @device.device_call(duration=lambda x: 10)
    def double(x):
        calls.append(x)
        return {"value": 2 * x}

    monkeypatch.setenv("STUDIO_CHECK_BOUNDARY", "1")
    with device.recording_calls() as log:
        assert double(21) == {"value": 42} and calls == [21]
    assert double.__name__ == "double" and log[0][0] == "double" and log[0][-1] is True


@dataclasses.dataclass(frozen=True)
class PlainRequest:
    pixels: np.ndarray
    steps: int
    name: str


@dataclasses.dataclass
class MutableRequest:
    steps: int


def test_only_plain_data_crosses_the_device_boundary():
    device.check_plain((PlainRequest(np.zeros((2, 2), np.float32), 3, "x"), [1, 2.5, None], {"a": (b"x",)}))
    for bad, words in ((lambda: None, "function"), (torch.zeros(2), "Tensor"), (torch.nn.Linear(1, 1), "Linear"),
                       (MutableRequest(1), "frozen dataclass"), (np.array([object()]), "object arrays"),
                       ({"x": [threading.Lock()]}, "lock")):
        with pytest.raises(device.BoundaryError, match=words):
            device.check_plain(bad, "request")


def test_a_closure_argument_is_refused_before_the_device_function_runs():
    ran = []

    @device.device_call()
    def work(x, on_step=None):
        ran.append(x)

    with pytest.raises(device.BoundaryError, match="on_step"):
        work(1, on_step=lambda i: i)
    assert ran == []


def test_progress_reaches_the_open_callback_only():
    seen = []
    device.report_progress(0.5, "nobody listens")
    with device.progress_to(lambda f, d: seen.append((f, d))):
        device.report_progress(0.25, "step")
        device.report_progress(7, "clamped")
    device.report_progress(0.9, "closed")
    assert seen == [(0.25, "step"), (1.0, "clamped")]


def test_compute_device_is_cpu_here_and_labelled():
    assert device.compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    label = device.device_label(torch.device("cpu"))
    assert label.startswith("CPU (") and "thread" in label
    assert device.configure_threads() == torch.get_num_threads() >= 1


def test_friendly_keeps_user_messages_and_hides_traces(caplog):
    @ui.friendly("Denoising")
    def bad_input():
        raise BadInput("The file is not a DICOM or image file.")

    @ui.friendly("Denoising")
    def no_model():
        raise ModelSourceError("The bundled weights for x are missing.")

    @ui.friendly("Denoising")
    def bug():
        raise KeyError("internal")

    with pytest.raises(gr.Error) as info:
        bad_input()
    assert info.value.message == "The file is not a DICOM or image file."
    with pytest.raises(gr.Error) as info:
        no_model()
    assert "bundled weights" in info.value.message
    with pytest.raises(gr.Error) as info:
        bug()
    assert info.value.message == "Denoising failed unexpectedly (KeyError). The details were logged."
    assert "internal" in caplog.text  # the trace went to the log, not to the user


def test_counts_and_status_text():
    assert ui.format_count(3638) == "3,638"
    assert ui.format_count(89_700_000) == "89.70 M"
    assert ui.params_markdown(3638, 0).startswith("**Adapter:** 3,638 trainable parameters")
    text = ui.params_markdown(1_000, 100_000)
    assert "(1.00% of the frozen model)" in text and "100,000" in text
    assert ui.done_markdown(1.234, "CPU (1 thread)") == "Done in 1.23 s on CPU (1 thread)."


def test_download_paths_are_unique_per_request():
    a, b = ui.download_path("out.png"), ui.download_path("out.png")
    assert a != b and a.name == b.name == "out.png" and a.parent.is_dir()


def test_upload_path_rejects_missing_file():
    with pytest.raises(BadInput, match="No file was given"):
        ui.upload_path(None)
    assert str(ui.upload_path({"path": "/tmp/x.dcm"})) == "/tmp/x.dcm"


def test_launch_settings_protect_medical_uploads():
    kwargs = settings.launch_kwargs()
    assert kwargs["run_history"] is False
    assert kwargs["max_file_size"] == settings.MAX_FILE_SIZE
    assert settings.IMAGE_FORMAT == "png"


def test_get_model_warns_about_a_fallback(monkeypatch):
    from studio.loader import LoadedModel

    warnings = []
    fallback = LoadedModel("weights", "bundled", "hub", "assets/x", notice="Could not load 'org/x' from the Hugging Face Hub (offline); using the bundled model instead.")
    monkeypatch.setattr(ui.MODELS, "get", lambda spec: fallback)
    monkeypatch.setattr(ui.gr, "Warning", warnings.append)
    assert ui.get_model(object()) is fallback
    assert warnings == [fallback.notice]
    assert ui.source_markdown(fallback).startswith("Model source: `bundled` (assets/x). Could not load 'org/x'")


def test_download_folders_are_private_and_expire(monkeypatch, tmp_path):
    import os
    import stat
    import time

    monkeypatch.setattr(ui, "DOWNLOADS", tmp_path / "downloads")
    monkeypatch.setenv("STUDIO_RETENTION_MINUTES", "1")
    old = ui.download_path("old.dcm")
    old.write_bytes(b"identifying")
    assert stat.S_IMODE(old.parent.stat().st_mode) == 0o700
    past = time.time() - 120
    os.utime(old.parent, (past, past))
    fresh = ui.download_path("fresh.dcm")
    assert not old.exists() and not old.parent.exists() and fresh.parent.is_dir()
    assert settings.retention_seconds() == 60


def test_the_app_empties_gradios_cache_on_the_retention_schedule():
    import app

    frequency, age = app.demo.delete_cache
    assert age == settings.retention_seconds() and 60 <= frequency <= age
