"""CT slice I/O: HU from DICOM/PNG/TIFF/.npy, the DICOM round trip and de-identification, bad input."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from adapters.common.errors import BadInput
from adapters.filter2noise import io

CT_SMALL = io.pydicom_test_file("CT_small.dcm")


def test_dicom_rescales_to_hu_and_reads_spacing():
    ds = pydicom.dcmread(CT_SMALL)
    s = io.load_slice(CT_SMALL)
    np.testing.assert_array_equal(s.hu, ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert s.spacing_mm == pytest.approx((0.661468, 0.661468))
    assert s.kind == "dicom" and s.hu.shape == (128, 128)


def test_dicom_round_trip_keeps_hu_geometry_and_removes_identifiers(tmp_path):
    s = io.load_slice(CT_SMALL)
    original = pydicom.dcmread(CT_SMALL)
    assert str(original.PatientName) and original.PatientID  # the test file does carry identifiers
    denoised = s.hu - 7.3  # any slice in HU
    out = io.save_dicom(s, denoised, tmp_path / "out.dcm")
    back = pydicom.dcmread(out)
    again = io.load_slice(out)
    np.testing.assert_allclose(again.hu, np.rint(denoised), atol=0.5)
    for kw in ("Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness",
               "RescaleSlope", "RescaleIntercept"):
        assert back.get(kw) == original.get(kw), kw
    assert back.SOPInstanceUID != original.SOPInstanceUID
    assert back.SeriesInstanceUID != original.SeriesInstanceUID
    assert back.StudyInstanceUID != original.StudyInstanceUID
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert list(back.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "Filter2Noise" in back.DerivationDescription
    assert str(back.PatientName) == "ANONYMOUS^PATIENT" and back.PatientID == "ANONYMOUS" and back.PatientBirthDate == ""
    assert "InstitutionName" not in back and "OperatorsName" not in back
    assert back.PatientIdentityRemoved == "YES"
    assert not any(tag.is_private for tag in back.keys())
    raw = out.read_bytes()
    for value in (str(original.PatientName), original.PatientID):
        assert value.encode() not in raw


def test_dicom_keeps_identifiers_only_when_asked(tmp_path):
    s = io.load_slice(CT_SMALL)
    original = pydicom.dcmread(CT_SMALL)
    back = pydicom.dcmread(io.save_dicom(s, s.hu, tmp_path / "keep.dcm", keep_identifiers=True))
    assert back.PatientName == original.PatientName and back.StudyInstanceUID == original.StudyInstanceUID
    assert back.SOPInstanceUID != original.SOPInstanceUID


def enhanced_ct(tmp_path, frames=3):
    """A multi-frame enhanced-CT-like file built from CT_small, with a rescale per frame."""
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(CT_SMALL)
    base = ds.pixel_array
    stack = np.stack([base + 10 * i for i in range(frames)]).astype(np.int16)
    ds.NumberOfFrames = frames
    per_frame = []
    for i in range(frames):
        item, transform, measures = Dataset(), Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -1024 - 100 * i, "HU"
        measures.PixelSpacing, measures.SliceThickness = [0.5, 0.6], 1
        item.PixelValueTransformationSequence, item.PixelMeasuresSequence = [transform], [measures]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelData = stack.tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    return path, stack


def test_multiframe_picks_a_frame_with_its_own_rescale(tmp_path):
    path, stack = enhanced_ct(tmp_path)
    s = io.load_slice(path, frame=2)
    np.testing.assert_array_equal(s.hu, stack[2].astype(np.float32) - 1024 - 200)
    assert s.spacing_mm == (0.5, 0.6) and s.frames == 3 and "frame 2" in " ".join(s.notes)
    back = io.load_slice(io.save_dicom(s, s.hu, tmp_path / "f.dcm"))
    np.testing.assert_array_equal(back.hu, s.hu)
    with pytest.raises(BadInput, match="has 3 frames"):
        io.load_slice(path, frame=3)


def test_png16_and_npy_round_trip(tmp_path):
    hu = np.clip(np.random.default_rng(0).normal(0, 300, (40, 50)), -1024, 3000).astype(np.float32)
    np.testing.assert_array_equal(io.load_slice(io.save_png16(hu, tmp_path / "a.png")).hu, np.rint(hu))
    np.testing.assert_array_equal(io.load_slice(io.save_npy(hu, tmp_path / "a.npy")).hu, hu)


def test_colour_and_8bit_images_are_converted_with_a_note(tmp_path):
    import cv2

    grey = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([grey, grey // 2, grey]))
    s = io.load_slice(tmp_path / "rgb.png")
    assert s.hu.shape == (32, 32) and any("colour" in n for n in s.notes) and any("8-bit" in n for n in s.notes)


def test_volume_npy_uses_one_slice(tmp_path):
    vol = np.random.default_rng(0).normal(0, 50, (5, 32, 32)).astype(np.float32)
    np.save(tmp_path / "v.npy", vol)
    s = io.load_slice(tmp_path / "v.npy")
    np.testing.assert_array_equal(s.hu, vol[2])
    np.save(tmp_path / "v4.npy", vol[None])
    with pytest.raises(BadInput, match="2-D slice"):
        io.load_slice(tmp_path / "v4.npy")


def _npy(tmp_path, arr):
    np.save(tmp_path / "x.npy", arr)
    return tmp_path / "x.npy"


@pytest.mark.parametrize("make, message", [
    (lambda p: (p / "a.txt").write_text("hello") and p / "a.txt", "not a file the CT tab can read"),
    (lambda p: (p / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40) and p / "a.png", "could not be decoded"),
    (lambda p: (p / "t.dcm").write_bytes(CT_SMALL.read_bytes()[:3000]) and p / "t.dcm", "truncated"),
    (lambda p: (p / "g.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50) and p / "g.dcm", "corrupt"),
    (lambda p: io.pydicom_test_file("MR_truncated.dcm"), "truncated"),
    (lambda p: io.pydicom_test_file("JPEG-lossy.dcm"), "compressed"),
    (lambda p: io.pydicom_test_file("SC_rgb.dcm") if (io.pydicom_test_file("CT_small.dcm").parent / "SC_rgb.dcm").exists()
     else io.pydicom_test_file("SC_rgb_small_odd.dcm"), "colour"),
    (lambda p: io.pydicom_test_file("rtplan.dcm"), "no readable image"),
    (lambda p: _npy(p, np.full((64, 64), 40.0)), "constant"),
    (lambda p: _npy(p, np.where(np.eye(64) > 0, np.nan, 1.0)), "NaN"),
    (lambda p: _npy(p, np.where(np.eye(64) > 0, np.inf, 1.0)), "NaN or infinite"),
    (lambda p: _npy(p, np.ones((1, 1))), "at least 16x16"),
    (lambda p: _npy(p, np.zeros((2049, 100), np.int16)), "largest supported"),
    (lambda p: _npy(p, np.array([["a", "b"]] * 20)), "real numbers"),
    (lambda p: (p / "o.npy").write_bytes(b"\x93NUMPY garbage") and p / "o.npy", "corrupt"),
])
def test_bad_inputs_get_a_clear_message(tmp_path, make, message):
    with pytest.raises(BadInput, match=message):
        io.load_slice(make(tmp_path))
