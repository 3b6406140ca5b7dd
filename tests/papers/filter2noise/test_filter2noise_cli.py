"""The series command line: a folder of DICOM slices in, de-identified denoised slices out."""
from __future__ import annotations

import numpy as np
import pydicom

from adapters.filter2noise import cli
from adapters.filter2noise.io import load_slice, pydicom_test_file


def test_cli_denoises_a_folder_as_one_series(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    ct = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    rng = np.random.default_rng(0)
    for i in range(2):
        ds = ct.copy()
        noisy = ct.pixel_array.astype(np.int32) + rng.normal(0, 40, ct.pixel_array.shape).round().astype(np.int32)
        ds.PixelData = noisy.astype(np.int16).tobytes()
        ds.InstanceNumber = 2 - i
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(src / f"{ct.PatientName}_{i}.dcm")
    (src / "readme.dcm").write_text("not dicom")
    assert cli.main([str(src), str(out), "--iterations", "5"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 slice(s)" in captured.out and "1 skipped" in captured.out
    assert "corrupt" in captured.err and str(ct.PatientName) not in captured.out + captured.err
    files = sorted(out.iterdir())
    assert [p.name for p in files] == ["slice_0001.dcm", "slice_0002.dcm"]
    back = [pydicom.dcmread(p) for p in files]
    assert [int(b.InstanceNumber) for b in back] == [1, 2]  # ordered by instance number
    assert len({b.SeriesInstanceUID for b in back}) == 1 and len({b.StudyInstanceUID for b in back}) == 1
    assert back[0].SeriesInstanceUID != ct.SeriesInstanceUID
    assert all(str(b.PatientName) == "ANONYMOUS^PATIENT" and b.PatientIdentityRemoved == "YES" for b in back)
    noisy_in = load_slice(src / f"{ct.PatientName}_1.dcm").hu
    assert np.abs(load_slice(files[0]).hu - noisy_in).mean() > 1.0  # it really was filtered
