"""Regenerate the CT tab's examples in assets/filter2noise/ (deterministic, about 10 s on CPU).

- phantom_reference.npy: the Shepp-Logan phantom in HU (256x256, 1 mm pixels), reconstructed
  without noise through the same projection/FBP pipeline as the noisy ones;
- phantom_I0_1e4.npy, phantom_I0_2.5e3.npy: the same slice at 10,000 and 2,500 photons per ray
  (Poisson counts, -log, ramp-filtered back-projection over 360 views);
- CT_small.dcm: pydicom's 128x128 CT test slice (MIT-licensed pydicom test data), copied so the
  app can serve it; it is a clean slice with little visible noise;
- CT_small_I0_5e3.dcm + CT_small_reference.npy: CT_small through the same low-dose simulation at
  5,000 photons per ray (its 0.66 mm pixels), written as a de-identified DICOM with CT_small's
  geometry and rescale, and its noiseless reconstruction as reference.

    python -m training.filter2noise.make_examples
"""
from __future__ import annotations

import shutil

import numpy as np

from adapters.filter2noise.data import shepp_logan_hu, simulate_low_dose
from adapters.filter2noise.io import UIDMapper, load_slice, pydicom_test_file, save_dicom
from studio.loader import ASSETS

OUT = ASSETS / "filter2noise"
DOSES = {"1e4": 1e4, "2.5e3": 2.5e3}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    hu = shepp_logan_hu(256)
    for seed, (name, photons) in enumerate(DOSES.items()):
        noisy, reference = simulate_low_dose(hu, photons, pixel_mm=1.0, views=360, seed=seed)
        np.save(OUT / f"phantom_I0_{name}.npy", noisy)
        np.save(OUT / "phantom_reference.npy", reference)
    shutil.copyfile(pydicom_test_file("CT_small.dcm"), OUT / "CT_small.dcm")
    ct = load_slice(OUT / "CT_small.dcm")
    noisy, reference = simulate_low_dose(ct.hu, 5e3, pixel_mm=ct.spacing_mm[1], views=360, seed=0)
    np.save(OUT / "CT_small_reference.npy", reference)
    save_dicom(ct, noisy, OUT / "CT_small_I0_5e3.dcm", uids=UIDMapper("filter2noise-example"),
               description="Simulated low dose (5000 photons per ray) from pydicom CT_small",
               series_description="Simulated low dose (I0 5000)")
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
