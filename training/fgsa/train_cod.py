"""Train the FGSA adapter around a frozen SAM image encoder on the public COD datasets (GPU).

Expected layout (the common COD10K + CAMO release, as used by SINet-V2 / FGSA-Net):

    <data>/TrainDataset/Imgs/*.jpg   <data>/TrainDataset/GT/*.png
    <data>/TestDataset/<COD10K|CAMO|CHAMELEON|NC4K>/Imgs/*.jpg   .../GT/*.png

(`Image`/`Images` and `GT_Object`/`Mask`/`Masks` folder names are accepted too.) Output, in hub
layout for `STUDIO_HUB_FGSA_ADAPTER=<out>`: `fgsa_adapter.safetensors` + `fgsa_adapter.json` with
the test-set figures.

    python -m training.fgsa.train_cod --data /data/COD --out runs/fgsa-sam --steps 20000 --batch 4

This script has not been run for this repository (no GPU here); its dataset reader and one
optimisation step are tested on a tiny fake folder with a tiny random SAM.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from adapters.fgsa.loading import ADAPTER_FILE, load_sam_backbone
from adapters.fgsa.modeling import SAM_ID, FGSANet, sam_fgsa_config, structure_loss

IMAGE_DIRS = ("Imgs", "Image", "Images", "images")
MASK_DIRS = ("GT", "GT_Object", "Mask", "Masks", "masks")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


def _first_dir(root: Path, names) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"none of {', '.join(names)} under {root}")


def cod_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one split folder, matched by file stem; unmatched files are skipped."""
    images = _first_dir(split_dir, IMAGE_DIRS)
    masks = {p.stem: p for p in _first_dir(split_dir, MASK_DIRS).iterdir() if p.suffix.lower() in IMAGE_EXTS}
    pairs = [(p, masks[p.stem]) for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.stem in masks]
    if not pairs:
        raise FileNotFoundError(f"no image/mask pairs in {split_dir}")
    return pairs


class CODDataset(torch.utils.data.Dataset):
    """RGB in [0, 1] and a 0/1 mask, both resized to the backbone's input size."""

    def __init__(self, split_dir: Path, size: int, train: bool):
        self.pairs, self.size, self.train = cod_pairs(Path(split_dir)), size, train

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        import cv2

        image_path, mask_path = self.pairs[index]
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise OSError(f"unreadable pair {image_path.name}")
        image = cv2.resize(image[:, :, ::-1], (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        mask = torch.from_numpy((mask > 127).astype(np.float32))[None]
        if self.train and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


@torch.no_grad()
def evaluate(model: FGSANet, loader, device) -> dict:
    from adapters.fgsa.metrics import sod_metrics

    model.eval()
    probs, gts = [], []
    for image, mask in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            probs.append(model(image.to(device)).float().sigmoid().cpu()[:, 0].numpy())
        gts.append(mask[:, 0].numpy())
    return sod_metrics(np.concatenate(probs), np.concatenate(gts))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--backbone", default=SAM_ID, help="hub id or directory of a SAM checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-sets", nargs="*", default=["COD10K", "CAMO", "CHAMELEON", "NC4K"])
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    backbone = load_sam_backbone(args.backbone)
    model = FGSANet(backbone, sam_fgsa_config(len(backbone.layers), backbone.dim)).to(device)
    train_set = CODDataset(args.data / "TrainDataset", backbone.image_size, train=True)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True, drop_last=len(train_set) > args.batch,
                                         num_workers=args.workers, pin_memory=device.type == "cuda")
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    args.out.mkdir(parents=True, exist_ok=True)
    step, start = 0, time.time()
    model.train()
    while step < args.steps:
        for image, mask in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(image.to(device, non_blocking=True))
            loss = structure_loss(logits.float(), mask.to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 100 == 0 or step == args.steps:
                print(f"step {step}/{args.steps} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
            if step >= args.steps:
                break

    figures = {}
    for name in args.eval_sets:
        split = args.data / "TestDataset" / name
        if split.is_dir():
            test = torch.utils.data.DataLoader(CODDataset(split, backbone.image_size, train=False), batch_size=args.batch, num_workers=args.workers)
            figures[name] = evaluate(model, test, device)
            print(name, figures[name], flush=True)
    from adapters.fgsa.loading import save_adapter

    model.cpu()
    save_adapter(args.out, model, ADAPTER_FILE, extra={"figures": figures, "backbone": args.backbone, "steps": args.steps,
                                                        "train_seconds": time.time() - start})
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
