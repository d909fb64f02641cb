"""One fuzz target under atheris/libFuzzer: ``python tests/fuzz/target.py NAME [libFuzzer args]``.

NAME is images, upload, overrides or sidecar (tests/fuzz/checks.py says what each does). Our packages,
Pillow's and tifffile's Python code and the standard TOML reader are instrumented for coverage;
native decoders are not, but a crash in them still stops the run with the input saved.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
NAME = sys.argv.pop(1)

with atheris.instrument_imports(include=["pipeline", "daemon", "proto", "tests.fuzz", "PIL", "tifffile",
                                         "tomllib"]):
    from tests.fuzz import checks

TARGETS = {"images": checks.decode_image, "upload": checks.assemble_upload,
           "overrides": checks.parse_settings_text, "sidecar": checks.read_sidecar}

if __name__ == "__main__":
    atheris.Setup(sys.argv, TARGETS[NAME])
    atheris.Fuzz()
