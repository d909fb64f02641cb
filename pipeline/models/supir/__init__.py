"""SUPIR (Yu et al. 2024) on diffusers' SDXL modules: control encoder, connectors, UNet wiring,
loader for SUPIR-v0Q/v0F, denoiser and the restore pipeline the ``supir`` stage runs."""
