"""SDXL on diffusers modules: architectures read off checkpoints, original-layout key maps, strict
low-memory loading, prompt encoding with an offline CLIP vocabulary, tiled VAE."""
