"""RetinaFace (Deng et al. 2019, "RetinaFace: Single-stage Dense Face Localisation in the Wild"), the face
detector that facexlib, GFPGAN, CodeFormer and ComfyUI-ReActor use, written as small torch modules.

Why not ``pip install facexlib``: facexlib 0.3.0 pulls opencv-python 5.x (the non-headless build, which
replaces our cv2 with one that has no Haar cascades), numba/llvmlite, scipy, filterpy and matplotlib,
imports torchvision for the ResNet and NMS, and its ``init_detection_model`` downloads the weights from
GitHub at run time. Dermis only needs the network, so it is here, with exactly the module names facexlib
builds (``body.*`` from torchvision's ResNet-50 / the MobileNet-0.25 of Pytorch_Retinaface, ``fpn.*``,
``ssh1..3``, ``ClassHead/BboxHead/LandmarkHead.{0,1,2}.conv1x1``) so the files users already have load
unchanged: ``detection_Resnet50_Final.pth`` (27.4 M parameters) and ``detection_mobilenet0.25_Final.pth``
(0.43 M). Both are MIT-licensed (biubug6/Pytorch_Retinaface, redistributed by facexlib).

Loading: ``load.load_retinaface``. Decoding the outputs into boxes and landmarks: ``pipeline.faces.detect``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Variant = Literal["resnet50", "mobilenet0.25"]


@dataclass(frozen=True)
class RetinaFaceConfig:
    """facexlib's ``cfg_re50`` / ``cfg_mnet`` (the parts inference uses)."""

    variant: Variant
    in_channels: tuple[int, int, int]  # backbone channels at strides 8, 16, 32
    out_channels: int
    min_sizes: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))  # anchor sizes per level
    steps: tuple[int, int, int] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)


CONFIGS: dict[str, RetinaFaceConfig] = {
    "resnet50": RetinaFaceConfig("resnet50", (512, 1024, 2048), 256),
    "mobilenet0.25": RetinaFaceConfig("mobilenet0.25", (64, 128, 256), 64),
}

# BGR means the network was trained with (its input is a cv2 image in 0..255 minus these)
BGR_MEAN = (104.0, 117.0, 123.0)


# --- building blocks (Sequential indices are part of the key layout: conv=0, bn=1, act=2) ---

def _conv_bn(cin: int, cout: int, k: int, stride: int, leaky: float | None, groups: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return layers


def conv_bn(cin: int, cout: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(cin, cout, 3, stride, leaky))


def conv_bn_no_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(cin, cout, 3, 1, None))


def conv_bn_1x1(cin: int, cout: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(cin, cout, 1, 1, leaky))


def conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1 (keys 0,1 / 3,4)."""
    return nn.Sequential(*_conv_bn(cin, cin, 3, stride, leaky, groups=cin), *_conv_bn(cin, cout, 1, 1, leaky))


class MobileNetBody(nn.Module):
    """MobileNet-0.25 of Pytorch_Retinaface up to stage3 (facexlib drops its avgpool/fc, so the file has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn(3, 8, 2, leaky=0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2),
                                    conv_dw(32, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *(conv_dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 bottleneck (v1.5: the stride sits on the 3x3 conv)."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50Body(nn.Module):
    """torchvision ``resnet50`` as facexlib's IntermediateLayerGetter keeps it (no avgpool/fc)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers.append(nn.Sequential(*(Bottleneck(cin if b == 0 else width * 4, width, stride if b == 0 else 1)
                                          for b in range(blocks))))
            cin = width * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0  # Pytorch_Retinaface's rule: the small net uses leaky ReLUs
        self.output1 = conv_bn_1x1(in_channels[0], out, leaky)
        self.output2 = conv_bn_1x1(in_channels[1], out, leaky)
        self.output3 = conv_bn_1x1(in_channels[2], out, leaky)
        self.merge1 = conv_bn(out, out, leaky=leaky)
        self.merge2 = conv_bn(out, out, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        leaky = 0.1 if cout <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(cin, cout // 2)
        self.conv5X5_1 = conv_bn(cin, cout // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(cout // 4, cout // 4)
        self.conv7X7_2 = conv_bn(cout // 4, cout // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(cout // 4, cout // 4)  # lower-case x, as in the original

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.conv5X5_1(x)
        b7 = self.conv7X7_2(b5)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(b5), self.conv7x7_3(b7)], dim=1))


class Head(nn.Module):
    """1x1 conv predicting ``per_anchor`` values for each of 2 anchors at every position."""

    def __init__(self, cin: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, A*k, H, W) -> (N, H*W*A, k): the anchor order PriorBox generates
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    def __init__(self, cfg: RetinaFaceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = ResNet50Body() if cfg.variant == "resnet50" else MobileNetBody()
        self.fpn = FPN(cfg.in_channels, cfg.out_channels)
        self.ssh1 = SSH(cfg.out_channels, cfg.out_channels)
        self.ssh2 = SSH(cfg.out_channels, cfg.out_channels)
        self.ssh3 = SSH(cfg.out_channels, cfg.out_channels)
        self.ClassHead = nn.ModuleList(Head(cfg.out_channels, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(cfg.out_channels, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(cfg.out_channels, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """BGR 0..255 minus BGR_MEAN, (N, 3, H, W) -> box offsets (N, P, 4), face probability (N, P),
        landmark offsets (N, P, 10), P = anchors over all three levels."""
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return loc, F.softmax(logits, dim=-1)[..., 1], landm


def variant_of(keys: Collection[str]) -> Variant | None:
    if "body.conv1.weight" in keys and "body.layer4.0.conv1.weight" in keys:
        return "resnet50"
    if "body.stage1.0.0.weight" in keys and "body.stage3.1.3.weight" in keys:
        return "mobilenet0.25"
    return None
