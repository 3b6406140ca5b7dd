"""Errors that carry a message meant for the person using the studio.

Adapters and I/O code raise `BadInput` (no gradio dependency); `studio.ui.friendly` turns it into a
`gr.Error` with the same words.
"""


class BadInput(ValueError):
    """The user's input cannot be used; the message says why and what to do instead."""
