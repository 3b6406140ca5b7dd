"""Shared machinery of Adapter Studio: model sources, device handling, app settings and UI helpers.

Nothing here does model math; `adapters/` holds that and `tabs/` the per-paper UIs.
"""
