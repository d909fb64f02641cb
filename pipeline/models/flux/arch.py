"""FLUX.1 architectures, typed: the transformer (``FluxArch``) and the autoencoder (``FluxVaeArch``).

``FluxArch`` is BFL's ``FluxParams`` (black-forest-labs/flux ``src/flux/model.py``), checked when it is
made, so an impossible architecture fails before a module is built. diffusers'
``FluxTransformer2DModel`` takes another spelling of the same numbers (heads x head width instead of
the hidden width): ``to_diffusers()`` gives its config, ``from_diffusers()`` reads one (a config.json
next to the weights). No file carries an architecture and the hub is never asked for one, so
``from_shapes`` reads it off the tensors; diffusers 0.42's own converter hard-codes a 3072 width and a
4.0 MLP ratio, this takes every size from the shapes, so it reads the 12B model and a tiny one alike.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...errors import WrongWeights

Layout = Literal["bfl", "diffusers"]
Shapes = Mapping[str, Sequence[int]]

# The FLUX.1 autoencoder (ae.safetensors): BFL's AutoEncoder hard-codes GroupNorm(32); the latent
# scale and shift are not in the file either (flux.util.configs["flux-dev"].ae_params).
VAE_SCALING, VAE_SHIFT, VAE_GROUPS = 0.3611, 0.1159, 32
LATENT_CHANNELS = 16
# Live previews: a fixed linear map from the scaled 16-channel latent (the space the sampler works in)
# to RGB in [-1, 1], no decoder. The numbers are ComfyUI's (comfy/latent_formats.py, class Flux:
# latent_rgb_factors and latent_rgb_factors_bias, a least-squares fit of VAE decodes), rows = channels.
LATENT_RGB = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
)
LATENT_RGB_BIAS = (-0.0329, -0.0718, -0.0851)


@dataclass(frozen=True)
class FluxArch:
    """The FLUX.1 transformer's shape (BFL's FluxParams less the two numbers diffusers hard-codes:
    RoPE theta 10000 and biased q/k/v)."""

    in_channels: int  # 64 = 16 latent channels x a 2x2 patch
    out_channels: int  # = in_channels for FLUX.1
    vec_in_dim: int  # CLIP-L's pooled width (768)
    context_in_dim: int  # T5-XXL's width (4096)
    hidden_size: int  # 3072
    mlp_ratio: float  # 4.0 (the only ratio FluxTransformer2DModel can hold)
    num_heads: int  # 24
    depth: int  # double-stream blocks (19)
    depth_single_blocks: int  # single-stream blocks (38)
    axes_dim: tuple[int, int, int]  # RoPE split of one head over (index, row, column): (16, 56, 56)
    guidance_embed: bool  # FLUX.1-dev's distilled guidance input (schnell has none)
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(f"RoPE axes {self.axes_dim} add up to {sum(self.axes_dim)}, not to the head "
                             f"width {self.head_dim}")
        if self.mlp_ratio != 4.0:
            raise ValueError(f"MLP ratio {self.mlp_ratio}: diffusers' FluxTransformer2DModel holds only 4.0")
        if min(self.in_channels, self.out_channels, self.vec_in_dim, self.context_in_dim, self.depth) < 1:
            raise ValueError(f"{self} has a width or depth below 1")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_diffusers(self) -> dict[str, Any]:
        """The ``FluxTransformer2DModel`` config (``from_config`` takes it as is)."""
        return dict(
            patch_size=self.patch_size, in_channels=self.in_channels,
            out_channels=None if self.out_channels == self.in_channels else self.out_channels,
            num_layers=self.depth, num_single_layers=self.depth_single_blocks, attention_head_dim=self.head_dim,
            num_attention_heads=self.num_heads, joint_attention_dim=self.context_in_dim,
            pooled_projection_dim=self.vec_in_dim, guidance_embeds=self.guidance_embed,
            axes_dims_rope=self.axes_dim,
        )

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any]) -> FluxArch:
        """A ``FluxTransformer2DModel`` config (keys it lacks take that class's defaults, as ``from_config``
        gives them; ``_``-keys and unknown ones are ignored, as there)."""
        from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel

        defaults = {n: p.default for n, p in inspect.signature(FluxTransformer2DModel.__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        c = {**defaults, **{k: v for k, v in config.items() if k in defaults}}
        head_dim, heads, in_ch = c["attention_head_dim"], c["num_attention_heads"], c["in_channels"]
        return cls(
            in_channels=in_ch, out_channels=c["out_channels"] or in_ch, vec_in_dim=c["pooled_projection_dim"],
            context_in_dim=c["joint_attention_dim"], hidden_size=heads * head_dim, mlp_ratio=4.0, num_heads=heads,
            depth=c["num_layers"], depth_single_blocks=c["num_single_layers"],
            axes_dim=tuple(c["axes_dims_rope"]), guidance_embed=bool(c["guidance_embeds"]),
            patch_size=c["patch_size"],
        )

    @classmethod
    def from_shapes(cls, shapes: Shapes, layout: Layout, origin: Path) -> FluxArch:
        """The architecture of a transformer file in either layout (FLUX.1-dev's exactly at full size)."""
        where = _WHERE[layout]
        try:
            n = {name: shapes[key][i] for name, (key, i) in where.items() if name != "mlp"}
            hidden, head_dim = n["hidden"], n["head_dim"]
            layers, single = (count(shapes, pattern) for pattern in _BLOCKS[layout])
            mlp_key, mlp_i = where["mlp"]
            if layout == "bfl":  # single blocks fuse q, k, v and the MLP input in one linear1
                mlp = shapes[mlp_key][mlp_i] - 3 * hidden if single else 4 * hidden
            else:
                mlp = shapes[mlp_key][mlp_i]
        except (KeyError, ValueError, IndexError) as e:
            raise WrongWeights(origin, f"is not a complete FLUX.1 transformer (no tensor {e}).") from None
        guidance = _GUIDANCE[layout] in shapes
        if not guidance:
            raise WrongWeights(origin, "has no guidance embedding: it is FLUX.1-schnell-like, not a FLUX.1-dev "
                                       "(SRPO) transformer, which this stage's guidance setting needs.")
        if hidden % head_dim or mlp != 4 * hidden:
            raise WrongWeights(origin, f"has a FLUX-like layout with widths diffusers' FluxTransformer2DModel "
                                       f"cannot hold (hidden {hidden}, head {head_dim}, mlp {mlp}).")
        return cls(in_channels=n["in"], out_channels=n["out"], vec_in_dim=n["pooled"], context_in_dim=n["joint"],
                   hidden_size=hidden, mlp_ratio=mlp / hidden, num_heads=hidden // head_dim, depth=layers,
                   depth_single_blocks=single, axes_dim=rope_axes(head_dim), guidance_embed=guidance)


# Where each number of the architecture is read in each layout: name -> (tensor, dimension)
_WHERE: dict[Layout, dict[str, tuple[str, int]]] = {
    "bfl": {"hidden": ("img_in.weight", 0), "in": ("img_in.weight", 1),
            "head_dim": ("double_blocks.0.img_attn.norm.key_norm.scale", 0), "joint": ("txt_in.weight", 1),
            "pooled": ("vector_in.in_layer.weight", 1), "out": ("final_layer.linear.weight", 0),
            "mlp": ("single_blocks.0.linear1.weight", 0)},
    "diffusers": {"hidden": ("x_embedder.weight", 0), "in": ("x_embedder.weight", 1),
                  "head_dim": ("transformer_blocks.0.attn.norm_k.weight", 0), "joint": ("context_embedder.weight", 1),
                  "pooled": ("time_text_embed.text_embedder.linear_1.weight", 1), "out": ("proj_out.weight", 0),
                  "mlp": ("transformer_blocks.0.ff.net.0.proj.weight", 0)},
}
_BLOCKS: dict[Layout, tuple[str, str]] = {  # double-stream and single-stream block numbers
    "bfl": (r"double_blocks\.(\d+)\.", r"single_blocks\.(\d+)\."),
    "diffusers": (r"transformer_blocks\.(\d+)\.", r"single_transformer_blocks\.(\d+)\."),
}
_GUIDANCE: dict[Layout, str] = {"bfl": "guidance_in.in_layer.weight",
                                "diffusers": "time_text_embed.guidance_embedder.linear_1.weight"}

# FLUX.1-dev's transformer (black-forest-labs/FLUX.1-dev transformer/config.json, flux.util's
# configs["flux-dev"]); SRPO is a fine-tune of it with the same shapes.
FLUX_DEV = FluxArch(in_channels=64, out_channels=64, vec_in_dim=768, context_in_dim=4096, hidden_size=3072,
                    mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38, axes_dim=(16, 56, 56),
                    guidance_embed=True)


@dataclass(frozen=True)
class FluxVaeArch:
    """The FLUX.1 autoencoder's shape (BFL's AutoEncoderParams, the parts a file can show)."""

    widths: tuple[int, ...]  # channels per level (128, 256, 512, 512)
    layers: int  # res blocks per level in the encoder (2)
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = LATENT_CHANNELS
    quant_conv: bool = False  # FLUX's ae has neither quant_conv nor post_quant_conv
    post_quant_conv: bool = False
    mid_attention: bool = True
    scaling_factor: float = VAE_SCALING  # latent = (mode - shift) * scale
    shift_factor: float = VAE_SHIFT

    def __post_init__(self) -> None:
        if not self.widths or any(w % VAE_GROUPS for w in self.widths):
            raise ValueError(f"autoencoder widths {self.widths} are not multiples of its {VAE_GROUPS} norm groups")

    def to_diffusers(self) -> dict[str, Any]:
        """The ``AutoencoderKL`` config, latent scale and shift included."""
        n = len(self.widths)
        return dict(
            in_channels=self.in_channels, out_channels=self.out_channels,
            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=self.widths, layers_per_block=self.layers, act_fn="silu",
            latent_channels=self.latent_channels, norm_num_groups=VAE_GROUPS, sample_size=1024,
            scaling_factor=self.scaling_factor, shift_factor=self.shift_factor, force_upcast=True,
            use_quant_conv=self.quant_conv, use_post_quant_conv=self.post_quant_conv,
            mid_block_add_attention=self.mid_attention,
        )

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any]) -> FluxVaeArch:
        return cls(widths=tuple(config["block_out_channels"]), layers=config["layers_per_block"],
                   in_channels=config.get("in_channels", 3), out_channels=config.get("out_channels", 3),
                   latent_channels=config["latent_channels"], quant_conv=config.get("use_quant_conv", True),
                   post_quant_conv=config.get("use_post_quant_conv", True),
                   mid_attention=config.get("mid_block_add_attention", True),
                   scaling_factor=config.get("scaling_factor", VAE_SCALING),
                   shift_factor=config.get("shift_factor", VAE_SHIFT))

    @classmethod
    def from_shapes(cls, shapes: Shapes, layout: Layout, origin: Path) -> FluxVaeArch:
        """The architecture of an autoencoder file in either layout (any width)."""
        bfl = layout == "bfl"
        down = "encoder.down.{i}.block.{j}.conv1.weight" if bfl else "encoder.down_blocks.{i}.resnets.{j}.conv1.weight"
        attn = "encoder.mid.attn_1.q.weight" if bfl else "encoder.mid_block.attentions.0.to_q.weight"
        level = r"encoder\.down\.(\d+)\." if bfl else r"encoder\.down_blocks\.(\d+)\."
        block = r"encoder\.down\.0\.block\.(\d+)\." if bfl else r"encoder\.down_blocks\.0\.resnets\.(\d+)\."
        try:
            levels, per_level = count(shapes, level), count(shapes, block)
            channels = tuple(shapes[down.format(i=i, j=0)][0] for i in range(levels))
            in_ch = shapes["encoder.conv_in.weight"][1]
            out_ch = shapes["decoder.conv_out.weight"][0]
            z = shapes["decoder.conv_in.weight"][1]
        except (KeyError, IndexError) as e:
            raise WrongWeights(origin, f"is not a complete FLUX.1 autoencoder (no tensor {e}).") from None
        if z != LATENT_CHANNELS:
            raise WrongWeights(origin, f"is an autoencoder with {z} latent channels; FLUX.1 needs its 16-channel "
                                       "ae.safetensors (an SDXL/SD1.5 VAE will not work).")
        try:
            return cls(widths=channels, layers=per_level, in_channels=in_ch, out_channels=out_ch, latent_channels=z,
                       quant_conv="quant_conv.weight" in shapes, post_quant_conv="post_quant_conv.weight" in shapes,
                       mid_attention=attn in shapes)
        except ValueError as e:
            raise WrongWeights(origin, f"is not a FLUX.1 autoencoder ({e}).") from None


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE split of one head over (index, row, column): FLUX.1's (16, 56, 56) for 128, same proportions
    otherwise. Not stored in any file; a config.json next to the weights overrides it."""
    if head_dim == 128:
        return (16, 56, 56)
    first = max(2, (head_dim // 8) // 2 * 2)
    rest = (head_dim - first) // 2 // 2 * 2
    return (head_dim - 2 * rest, rest, rest)


def count(shapes: Shapes, pattern: str) -> int:
    """How many distinct numbers ``pattern``'s group matches among the keys (blocks, layers, levels)."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})
