"""Which device and precision a job runs on, and seeded random generators.

CUDA when present (bf16 where supported, else fp16), otherwise CPU in fp32. Random numbers are drawn
from CPU generators seeded per stage, so a seed gives the same noise whatever else the job contains.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import torch

from .errors import InvalidParameter


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    dtype: torch.dtype
    name: str
    total_memory: int  # bytes; 0 when unknown
    free_memory: int


def select_device(name: str | None = None) -> tuple[torch.device, torch.dtype]:
    """'auto' (default, or $DERMIS_DEVICE), 'cpu', 'cuda' or 'cuda:N'."""
    name = (name or os.environ.get("DERMIS_DEVICE") or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParameter("device 'cuda' was asked for but no CUDA GPU is available.")
        dev = torch.device(name)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return dev, dtype
    if name == "cpu":
        return torch.device("cpu"), torch.float32
    raise InvalidParameter(f"unknown device {name!r}; use auto, cpu or cuda[:N].")


def describe(device: torch.device, dtype: torch.dtype) -> DeviceInfo:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return DeviceInfo(device, dtype, torch.cuda.get_device_name(device), total, free)
    return DeviceInfo(device, dtype, "CPU", 0, 0)


def stage_seed(seed: int, stage_id: str, offset: int = 0) -> int:
    """A 63-bit seed for one stage, independent of which other stages run."""
    mixed = (seed * 0x9E3779B97F4A7C15 + zlib.crc32(stage_id.encode()) * 0x100000001B3 + offset)
    return mixed % (2**63 - 1)


def generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def parse_dtype(name: str, default: torch.dtype) -> torch.dtype:
    table = {"auto": default, "fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
             "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise InvalidParameter(f"unknown dtype {name!r}; use auto, fp32, fp16 or bf16.")
    return table[name]


def free_memory(device: torch.device) -> int:
    """Bytes a job may still allocate on ``device``: CUDA's free memory plus what PyTorch's caching
    allocator holds unused; on the CPU the kernel's MemAvailable (free plus reclaimable cache)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not limit
