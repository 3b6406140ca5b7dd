"""Series mode: read several files, a zip or a multi-frame object in patient order; denoise every
slice (trained once or per slice); export one consistent de-identified series that dciodvfy
accepts with no error the source lacked; the command line does the same headless."""
from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pydicom
import pytest

from adapters.common.errors import BadInput
from adapters.filter2noise import series as ser
from adapters.filter2noise.config import FitSettings, SeriesRequest
from adapters.filter2noise.inference import run_series, training_slices
from adapters.filter2noise.io import load_slice, pydicom_test_file
from adapters.filter2noise.loading import F2NBundle
from adapters.filter2noise.testing import write_dicom_series
from tests.papers.filter2noise.test_filter2noise_deid import Canaries, _dciodvfy_errors, enhanced_ct

CT_SMALL = pydicom_test_file("CT_small.dcm")
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) "
                                    "is not installed; `apt-get install -y dicom3tools`")


def _slices(n, seed=0):
    base = load_slice(CT_SMALL).hu
    rng = np.random.default_rng(seed)
    return [base + 10 * i + rng.normal(0, 40, base.shape).astype(np.float32) for i in range(n)]


def test_files_and_a_zip_are_read_in_patient_order(tmp_path):
    hu = _slices(5)
    paths = write_dicom_series(tmp_path / "in", hu)  # file names shuffled against positions
    for given in (paths[::-1], [tmp_path / "in"]):
        series = ser.load_series(given)
        assert [int(s.dataset.InstanceNumber) for s in series.slices] == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(series.volume[3], np.rint(hu[3]), atol=0.51)
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        for p in paths:
            z.write(p, arcname=f"nested/{p.name}")
    series = ser.load_series([tmp_path / "s.zip"])
    assert len(series.slices) == 5 and series.volume.shape == (5, 128, 128)
    other = write_dicom_series(tmp_path / "other", _slices(1))
    with pytest.raises(BadInput, match="2 different series"):
        ser.load_series(paths[:2] + other)


def test_a_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(ser, "MAX_ZIP_BYTES", 2**20)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", b"\0" * (4 * 2**20))
    assert (tmp_path / "bomb.zip").stat().st_size < 20_000
    with pytest.raises(BadInput, match="inflates to more than 1 MB"):
        ser.load_series([tmp_path / "bomb.zip"])


def test_shared_training_uses_spread_slices_and_per_slice_trains_each():
    assert training_slices(20, 3) == (5, 10, 14) and training_slices(1, 3) == (0,) and training_slices(4, 1) == (2,)
    volume = np.stack([s[:48, :48] for s in _slices(4)])
    seen = []
    shared = run_series(F2NBundle(), SeriesRequest(volume, FitSettings(iterations=3, crop=32), shared=True),
                        progress=lambda f, text: seen.append((f, text)))
    assert shared.denoised.shape == volume.shape and shared.trained_on == (1, 2)
    assert seen[-1][0] == 1.0 and "slice 4 of 4" in seen[-1][1]
    assert all(np.abs(shared.denoised[i] - volume[i]).mean() > 1 for i in range(4))
    per = run_series(F2NBundle(), SeriesRequest(volume[:2], FitSettings(iterations=2, crop=32), shared=False))
    assert per.trained_on == (0, 1) and per.denoised.shape == volume[:2].shape


@needs_dciodvfy
def test_series_export_is_one_consistent_valid_series(tmp_path):
    hu = _slices(4)
    paths = write_dicom_series(tmp_path / "in", hu)
    series = ser.load_series(paths)
    written = ser.save_series(series, series.volume - 5, tmp_path / "out")
    back = [pydicom.dcmread(p) for p in written]
    sources = [s.dataset for s in series.slices]
    assert [int(b.InstanceNumber) for b in back] == [1, 2, 3, 4]
    assert [float(b.ImagePositionPatient[2]) for b in back] == [float(s.ImagePositionPatient[2]) for s in sources]
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(b.get(kw)) for b in back}) == 1 and str(back[0].get(kw)) != str(sources[0].get(kw)), kw
    assert len({b.SOPInstanceUID for b in back}) == 4
    assert len({b.StudyDate for b in back}) == 1 and all(b.PatientIdentityRemoved == "YES" for b in back)
    for out, src in zip(written, paths):
        assert not _dciodvfy_errors(out) - _dciodvfy_errors(src)


@needs_dciodvfy
def test_a_multi_frame_enhanced_ct_is_a_series_and_exports_valid(tmp_path):
    source, _ = enhanced_ct(tmp_path, Canaries(), frames=3)
    series = ser.load_series([source])
    assert len(series.slices) == 3 and "multi-frame" in series.notes[0]
    written = ser.save_series(series, series.volume + 3, tmp_path / "out")
    back = [pydicom.dcmread(p) for p in written]
    assert [int(b.InstanceNumber) for b in back] == [1, 2, 3] and len({b.SeriesInstanceUID for b in back}) == 1
    assert all(int(b.NumberOfFrames) == 1 for b in back)
    for out in written:
        assert not _dciodvfy_errors(out) - _dciodvfy_errors(source)
    np.testing.assert_allclose(load_slice(written[1]).hu, np.rint(series.volume[1] + 3), atol=0.51)


def test_cli_takes_a_zip_and_states_seconds_per_slice(tmp_path, capsys):
    from adapters.filter2noise import cli

    paths = write_dicom_series(tmp_path / "in", _slices(3))
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        for p in paths:
            z.write(p, arcname=p.name)
    assert cli.main([str(tmp_path / "s.zip"), str(tmp_path / "out"), "--iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 slice(s)" in out and "s per slice" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["slice_0001.dcm", "slice_0002.dcm", "slice_0003.dcm"]


def test_the_tab_denoises_a_series_scrolls_it_and_exports_a_zip(tmp_path):
    import tabs.filter2noise as tab

    paths = write_dicom_series(tmp_path / "in", _slices(3))
    quiet = lambda *a, **k: None  # noqa: E731
    view, index, download, status, record = tab.run_series([str(p) for p in paths], tab.SERIES_MODES[0],
                                                           "Soft tissue (W400 / L40)", 400, 40, 2, 250.0, "false",
                                                           progress=quiet)
    assert index["maximum"] == 3 and index["value"] == 2 and view[0].shape == (128, 128)
    assert "s per slice" in status and "trained once on slices 1, 2, 3" in status and "de-identified" in status
    with zipfile.ZipFile(download) as z:
        assert sorted(z.namelist()) == ["slice_0001.dcm", "slice_0002.dcm", "slice_0003.dcm"]
    first, last = tab.series_slice(1, "Brain (W80 / L40)", 400, 40, record), tab.series_slice(3, "Brain (W80 / L40)", 400, 40, record)
    assert not np.array_equal(first[0], last[0])
    with pytest.raises(Exception, match="No series was given"):
        tab.run_series(None, progress=quiet)
