"""Speculative decoding shared by the papers that draft and verify with a frozen causal LM.

`engine` holds the KV cache, the fused layer runner, plain greedy decoding and the draft/verify
loop; a paper plugs its drafter in by subclassing `engine.Drafter`. `Decoded` (the result of one
decode) is plain data and imports no torch. No paper package is imported from here.
"""
from adapters.speculative.decoded import Decoded

__all__ = ["Decoded"]
