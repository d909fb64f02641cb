"""Where the face models are found: the restorers (GFPGAN, CodeFormer) and the RetinaFace detectors,
in the folders ComfyUI-ReActor and facexlib use."""

from __future__ import annotations

from ..specs import WeightSpec

FACE_FOLDERS = ("facerestore_models", "GFPGAN", "Codeformer", "codeformer", "upscale_models")
DETECTOR_FOLDERS = ("facedetection", "facexlib", "GFPGAN", "Codeformer", "facerestore_models")


def _restorer(key: str, description: str, license: str, *patterns: str) -> WeightSpec:
    return WeightSpec(key=key, description=description, folders=FACE_FOLDERS, patterns=patterns, license=license)


def _retinaface(key: str, backbone: str, file: str, *loose: str) -> WeightSpec:
    return WeightSpec(key=key, description=f"RetinaFace {backbone} face detector (facexlib {file})",
                      folders=DETECTOR_FOLDERS, patterns=(file, *loose),
                      license="MIT (Pytorch_Retinaface, via facexlib)")


SPECS = (
    _restorer("gfpgan", "GFPGAN v1.4 or v1.3 face restorer (GFPGANv1.4.pth)", "Apache-2.0",
              "GFPGANv1.4.pth", "GFPGANv1.4.safetensors", "GFPGANv1.3.pth", "GFPGANv1.3.safetensors",
              "GFPGANv1*.pth", "GFPGANv1*.safetensors"),
    _restorer("codeformer", "CodeFormer face restorer (codeformer-v0.1.0.pth / codeformer.pth)",
              "S-Lab License 1.0 (non-commercial use only)",
              "codeformer-v0.1.0.pth", "codeformer.pth", "codeformer*.pth", "codeformer*.safetensors",
              "CodeFormer*.pth", "CodeFormer*.safetensors"),
    _retinaface("retinaface_resnet50", "ResNet-50", "detection_Resnet50_Final.pth",
                "*Resnet50_Final*.pth", "*retinaface*resnet50*.pth"),
    _retinaface("retinaface_mobilenet", "MobileNet-0.25", "detection_mobilenet0.25_Final.pth",
                "*mobilenet0.25_Final*.pth", "*retinaface*mobile*.pth"),
)
