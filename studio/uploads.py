"""Image inputs that reach the handler as the file the user sent, undecoded.

`gr.Image` opens every upload with PIL before the handler runs, converts it to its ``image_mode``
(8-bit RGB by default: 16-bit, float and alpha data are lost) and decodes inline ``data:`` images
itself, up to PIL's own limit. `ImageFile` keeps the same page widget but hands the handler a path
to the bytes as sent, so `adapters.common.imaging.read_rgb_image` checks the header (the tab's
pixel limit) before anything is decoded, and reads 16-bit, float and alpha images as they are.
"""
from __future__ import annotations

import gradio as gr
from gradio import processing_utils


class ImageFile(gr.Image):
    """`gr.Image` whose value is the uploaded file's path, never opened in Gradio."""

    # The page uses the ordinary image widget. No __init__ of its own: Gradio reads a template's
    # properties from its __init__ signature. Create it with type="filepath", image_mode=None.
    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            # only base64-decoded to bytes (the request-body limit bounds them), not as an image
            return processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE)
        return payload.path


def pixel_limit_text(max_pixels: int, max_side: int) -> str:
    """The limit as the upload label states it."""
    return f"at most {max_pixels / 1e6:g} megapixels and {max_side} px a side"
