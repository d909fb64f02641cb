"""Regenerate the Python code for proto/dermis/v1/dermis.proto (like grpc's run_codegen.py).

    python proto/regen.py            # rewrite the committed files
    python proto/regen.py --check    # exit 1 if the committed files differ from a fresh generation

Needs grpcio-tools (a dev dependency). The generated files are committed because the editors'
Pythons cannot run protoc. One edit is made to protoc's output so that a copy of ``proto/`` vendored
into a plugin under another top-level name still imports: ``dermis_pb2_grpc.py`` imports its messages
relatively (``from . import dermis_pb2``) instead of ``from dermis.v1 import dermis_pb2``, which only
works with ``proto/`` itself on sys.path. (``dermis_pb2.py`` imports nothing of ours.)

Runtime floor: the ``_pb2.py`` calls ``ValidateProtobufRuntimeVersion`` with the protobuf version of
the protoc inside grpcio-tools, and ``_pb2_grpc.py`` refuses a grpcio older than grpcio-tools. Both
floors are printed by ``--versions`` and documented in docs/daemon.md; bump them together with the
pins in pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = Path("dermis/v1/dermis.proto")  # relative to HERE: also the name the file is registered under
OUTPUTS = ("dermis_pb2.py", "dermis_pb2.pyi", "dermis_pb2_grpc.py")

_ABSOLUTE_IMPORT = re.compile(r"^from dermis\.v1 import (\w+_pb2) as (\w+)$", re.MULTILINE)


def generate(out_root: Path) -> list[Path]:
    """Run protoc into ``out_root`` (which gets ``dermis/v1/...``) and return the generated files."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("proto/regen.py needs grpcio-tools: pip install grpcio-tools (a dev dependency)")
    import importlib.resources

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {PROTO}")
    files = [out_root / PROTO.parent / name for name in OUTPUTS]
    grpc_file = files[2]
    text = grpc_file.read_text(encoding="utf-8")
    fixed, n = _ABSOLUTE_IMPORT.subn(r"from . import \1 as \2", text)
    if n != 1:
        sys.exit(f"regen.py: expected one 'from dermis.v1 import …' line in {grpc_file.name}, found {n}")
    grpc_file.write_text(fixed, encoding="utf-8")
    return files


def stale_files() -> list[str]:
    """Names of committed generated files that differ from a fresh generation (empty = up to date)."""
    with tempfile.TemporaryDirectory(prefix="dermis-regen-") as tmp:
        fresh = generate(Path(tmp))
        return [
            f.name for f in fresh
            if not (HERE / PROTO.parent / f.name).is_file()
            or (HERE / PROTO.parent / f.name).read_bytes() != f.read_bytes()
        ]


def runtime_floors() -> dict[str, str]:
    """The oldest protobuf and grpcio runtimes the committed generated code accepts."""
    pb2 = (HERE / PROTO.parent / OUTPUTS[0]).read_text(encoding="utf-8")
    grpc = (HERE / PROTO.parent / OUTPUTS[2]).read_text(encoding="utf-8")
    m = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),"
                  r"\s*(\d+),", pb2)
    g = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc)
    return {"protobuf": ".".join(m.groups()) if m else "?", "grpcio": g.group(1) if g else "?"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    p.add_argument("--versions", action="store_true", help="print the runtime floors and exit")
    args = p.parse_args(argv)
    if args.versions:
        for name, version in runtime_floors().items():
            print(f"{name}>={version}")
        return 0
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated code: " + ", ".join(stale) + " (run python proto/regen.py)")
            return 1
        print("generated code is up to date")
        return 0
    with tempfile.TemporaryDirectory(prefix="dermis-regen-") as tmp:
        for f in generate(Path(tmp)):
            shutil.copyfile(f, HERE / PROTO.parent / f.name)
            print(f"wrote {(HERE / PROTO.parent / f.name).relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
