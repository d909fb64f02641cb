"""Image-to-image models spandrel loads (ESRGAN, Compact, …): the 1x SkinDiffDetail model and upscalers.

Loading is ``pipeline.models.spandrel_loader`` (shared with the face restorers)."""
