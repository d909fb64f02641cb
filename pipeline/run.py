"""run(recipe, image, ...) -> result: the one entry point the CLI, the daemon and the tests share.

Progress and cancellation (``pipeline.progress``) travel through here: stages report through their
``StageContext`` and call ``ctx.cancel.check()`` at every step, tile and stage boundary; the run turns
each report into the job's ``Progress`` (stage id, overall fraction); the daemon maps both to proto events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import images, memory_policy
from .config import Config
from .detail import DEFAULT_SIGMA, check_sigma, detail_layer
from .device import select_device, stage_seed
from .errors import ImageTooLarge, InvalidParameter
from .images import Image
from .models.cache import ModelCache
from .models.weights import WeightLocator
from .previews import rgb_thumbnail
from .progress import CancelToken, Progress, ProgressFn, no_progress
from .recipes import Recipe
from .regions import Region, WorkArea, composite, feather, work_area
from .stages import ResolvedStage, make_params, resolve
from .stages.context import StageContext

__all__ = ["CancelToken", "Content", "OutputMode", "Progress", "ProgressFn", "RunResult", "StageContext", "run"]

log = logging.getLogger("dermis.pipeline")

OutputMode = Literal["full", "layer"]
Content = Literal["normal", "detail"]  # the refined pixels, or only the detail they add (pipeline/detail.py)


@dataclass(frozen=True)
class RunResult:
    image: Image  # the full image, or the layer (processed region with alpha) in "layer" mode
    offset: tuple[int, int]  # (x, y) of ``image`` in the output canvas; (0, 0) in "full" mode
    canvas_size: tuple[int, int]  # (width, height) of the whole output image
    recipe: Recipe
    seed: int
    layer_name: str
    timings: dict[str, float]  # stage id -> seconds
    messages: tuple[str, ...] = ()
    content: Content = "normal"


def run(
    recipe: Recipe,
    image: Image,
    *,
    seed: int = 0,
    region: Region | None = None,
    mask: np.ndarray | None = None,
    output: OutputMode = "full",
    content: Content = "normal",
    detail_sigma: float = DEFAULT_SIGMA,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    config: Config | None = None,
    locator: WeightLocator | None = None,
    models: ModelCache | None = None,
    device: str | None = None,
) -> RunResult:
    """Run a recipe on an image (or a region / soft mask of it) and return the result.

    ``content="detail"`` returns the detail layer instead of the refined pixels (same place, size and
    alpha): what Grain Merge over the source needs, with ``detail_sigma`` px (at the output scale)
    separating the detail from the colours."""
    config = config or Config()
    locator = locator or WeightLocator(config)
    models = models if models is not None else ModelCache()
    cancel = cancel or CancelToken()
    report = progress or no_progress
    if output not in ("full", "layer"):
        raise InvalidParameter(f"output must be 'full' or 'layer', not {output!r}.")
    if content not in ("normal", "detail"):
        raise InvalidParameter(f"content must be 'normal' or 'detail', not {content!r}.")
    if content == "detail":
        detail_sigma = check_sigma(detail_sigma)
    if not 0 <= seed < 2**63:
        raise InvalidParameter(f"seed must be between 0 and 2^63-1, not {seed}.")

    # 1. Check everything before doing anything
    stages, skipped = resolve(recipe, locator)
    dev, dtype = select_device(device or config.device)
    area = work_area(image.width, image.height, region=region, mask=mask, context=recipe.context)
    s = recipe.scale
    out_w, out_h = max(1, round(image.width * s)), max(1, round(image.height * s))
    if out_w * out_h > config.max_output_pixels:
        raise ImageTooLarge(
            f"the result would be {out_w}x{out_h} = {out_w * out_h:,} pixels, more than the limit of "
            f"{config.max_output_pixels:,}; lower the scale or select a region."
        )
    c = area.crop
    ox, oy = round(c.x * s), round(c.y * s)
    tw, th = round((c.x + c.w) * s) - ox, round((c.y + c.h) * s) - oy
    for st in stages:  # stage-specific limits (SUPIR's working canvas), before any model loads
        preflight = getattr(st.module, "preflight", None)
        if preflight is not None:
            preflight(st.params, (th, tw), config)
    report = _placing_previews(report, (ox, oy, tw, th))
    messages = [*image.notes, *(sk.reason for sk in skipped)]  # what decoding changed, stages skipped
    for m in messages:
        report(Progress("", 0, 0, message=m))

    # 2. Stages, each on the previous one's output
    rgb = np.ascontiguousarray(image.rgb[c.y : c.y + c.h, c.x : c.x + c.w])
    total = sum(st.cost for st in stages) or 1.0
    done = 0.0
    timings: dict[str, float] = {}
    for st in stages:
        cancel.check()
        t0 = time.perf_counter()
        stage_report = _reporter(report, st, done, total, messages)
        report(Progress(st.spec.id, 0, 0, fraction=done / total, message=f"{st.spec.id}: started"))

        def once(raw: Mapping[str, Any], st: ResolvedStage = st, rgb: np.ndarray = rgb,
                 stage_report: ProgressFn = stage_report) -> tuple[Any, dict[str, Any]]:
            params = st.params if raw is st.spec.params else make_params(st.module, raw, st.spec.id)
            ctx = StageContext(
                stage_id=st.spec.id,
                seed=stage_seed(seed, st.spec.id),
                device=dev,
                dtype=dtype,
                cancel=cancel,
                models=models,
                weights=st.weights,
                target_size=(th, tw),
                mask=_mask_for(area.mask, rgb.shape[:2]),
                locator=locator,
                on_progress=stage_report,
            )
            return memory_policy.attempt(lambda: st.module.run(rgb, params, ctx)), ctx.used

        rgb = memory_policy.run_with_ladder(
            once, st.spec.params, getattr(st.module, "MEMORY_KNOBS", ()), label=st.spec.id,
            evict=models.drop_unused_since,
            notify=lambda m, r=stage_report: r(Progress("", 0, 0, message=m)))
        _check_stage_output(st, rgb)
        if progress is not None and st is not stages[-1]:  # the image so far; the result ends the last one
            report(Progress(st.spec.id, 0, 0, fraction=(done + st.cost) / total, preview=rgb_thumbnail(rgb)))
        done += st.cost
        timings[st.spec.id] = time.perf_counter() - t0
        log.info("stage %s took %.2fs", st.spec.id, timings[st.spec.id])
    cancel.check()

    # 3. Exact output size, then back into the picture
    if rgb.shape[:2] != (th, tw):
        rgb = images.resize_rgb(rgb, (th, tw))
    result = _compose(image, rgb, area, recipe, output, (ox, oy, tw, th), (out_w, out_h), cancel.check)
    if content == "detail":
        cancel.check()
        under = _source_at_output(image, c if output == "layer" else None, result.rgb.shape[:2])
        result = result.with_rgb(detail_layer(result.rgb, under, detail_sigma))
    report(Progress("", 1, 1, fraction=1.0, message="done"))
    return RunResult(
        image=result,
        offset=(ox, oy) if output == "layer" else (0, 0),
        canvas_size=(out_w, out_h),
        recipe=recipe,
        seed=seed,
        layer_name=recipe.layer_name(seed, detail=content == "detail"),
        timings=timings,
        messages=tuple(messages),
        content=content,
    )


def _reporter(report: ProgressFn, st: ResolvedStage, done: float, total: float,
              messages: list[str]) -> ProgressFn:
    """The stage's reports as the job's: its id, and the fraction of the whole job done."""

    seen = [done / total]  # never backwards, also when the memory policy runs the stage again

    def emit(p: Progress) -> None:
        if p.steps > 0:
            local = ((max(p.tile, 1) - 1) * p.steps + p.step) / (max(p.tiles, 1) * p.steps)
        else:
            local = 0.0
        seen[0] = max(seen[0], (done + st.cost * min(1.0, max(0.0, local))) / total)
        if p.message and p.steps == 0:
            messages.append(p.message)
        report(p._replace(stage=st.spec.id, fraction=min(seen[0], 0.999)))

    return emit


def _source_at_output(image: Image, crop: Region | None, size: tuple[int, int]) -> np.ndarray:
    """The source's colours under a result of ``size`` (height, width): its ``crop`` (None = the whole
    image) resized the way the result was, so the two line up pixel for pixel."""
    rgb = image.rgb if crop is None else image.rgb[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]
    return rgb if rgb.shape[:2] == size else images.resize_rgb(rgb, size)


def _placing_previews(report: ProgressFn, area: tuple[int, int, int, int]) -> ProgressFn:
    """Every preview says where it goes: the processed area of the output canvas."""

    def emit(p: Progress) -> None:
        report(p._replace(area=area) if p.preview is not None and p.area is None else p)

    return emit


def _mask_for(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    return mask if mask.shape == shape else images.resize_plane(mask, shape)


def _check_stage_output(st: ResolvedStage, rgb: Any) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.float32:
        raise RuntimeError(f"stage {st.spec.id} returned {type(rgb).__name__} {getattr(rgb, 'shape', '')}")
    if not np.isfinite(rgb).all():
        raise RuntimeError(f"stage {st.spec.id} produced NaN or infinite pixels")


def _compose(
    image: Image,
    rgb: np.ndarray,
    area: WorkArea,
    recipe: Recipe,
    output: OutputMode,
    box: tuple[int, int, int, int],
    canvas: tuple[int, int],
    check: Callable[[], None],
) -> Image:
    """The stages' output back into the picture; ``check`` (the cancel check) runs between the steps
    that grow with the image (the feathered blend mask, the composite)."""
    ox, oy, tw, th = box
    out_w, out_h = canvas
    c = area.crop
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    src_alpha = None
    if image.alpha is not None:
        src_alpha = images.resize_plane(image.alpha[c.y : c.y + c.h, c.x : c.x + c.w], (th, tw))
    blend = None  # the whole image: nothing to blend
    if area.mask is not None:  # a region or a selection
        m = images.resize_plane(area.mask, (th, tw)) if area.mask.shape != (th, tw) else area.mask
        keep = (c.y == 0, c.y + c.h == image.height, c.x == 0, c.x + c.w == image.width)
        blend = feather(m, recipe.feather * recipe.scale, keep_border=keep, check=check)
    check()
    if output == "layer":
        alpha = np.ones((th, tw), np.float32) if blend is None else blend
        if src_alpha is not None:
            alpha = alpha * src_alpha
        mode = "LA" if image.mode in ("L", "LA") else "RGBA"
        return Image(rgb=rgb, alpha=alpha.astype(np.float32), bit_depth=image.bit_depth, mode=mode,
                     icc_profile=image.icc_profile)
    if blend is None:
        return image.with_rgb(rgb, alpha=src_alpha)
    base = image if (out_w, out_h) == image.size else images.resize(image, (out_h, out_w))
    full = base.rgb.copy()
    assert blend is not None  # a region or mask job (whole-image jobs returned above)
    full[oy : oy + th, ox : ox + tw] = composite(full[oy : oy + th, ox : ox + tw], rgb, blend)
    return base.with_rgb(full)
