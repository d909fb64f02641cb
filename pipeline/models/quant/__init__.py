"""Compact weights: GGUF-quantised and float8 tensors read, kept compact, and widened per layer.

``gguf_file`` reads GGUF (ComfyUI-GGUF's layout) into ``layers.Packed`` tensors, ``dequant`` turns GGML
blocks into float32, ``layers`` holds the Linear layers that widen their weights when they run and the
``adapt`` step that installs them, ``quantize`` writes GGUF files (tests, benchmarks). Every weight
file still goes through ``tensor_files``: GGUF is one more reader there, with the same key and shape
checks as safetensors.
"""

from .layers import FP8, CastLinear, Fp8Policy, Packed, QuantLinear, adapt, scale_keys

__all__ = ["FP8", "CastLinear", "Fp8Policy", "Packed", "QuantLinear", "adapt", "scale_keys"]
