"""Errors that carry a message meant for the person using the studio.

Paper code raises `BadInput` (no gradio dependency); the studio turns it into a `gr.Error` with the
same words, before any device work wherever the check can be made in the web process.
"""


class BadInput(ValueError):
    """The user's input cannot be used; the message says why and what to do instead."""
