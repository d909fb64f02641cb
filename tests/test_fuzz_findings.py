"""Every input the fuzzers (tests/fuzz/, `make fuzz`) found a bug with, run through the same check
the fuzz target runs: the code must refuse it with a DermisError (or the wire layer's own error),
nothing else. The inputs are under tests/data/fuzz/, named <target>-<what it was>.bin."""

from __future__ import annotations

import pytest

from .conftest import DATA
from .fuzz import checks

CHECKS = {"images": checks.decode_image, "upload": checks.assemble_upload,
          "overrides": checks.parse_settings_text, "sidecar": checks.read_sidecar}
FOUND = sorted((DATA / "fuzz").glob("*.bin"))


def test_there_are_findings_and_each_names_its_target():
    assert FOUND and all(p.name.split("-")[0] in CHECKS for p in FOUND)


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.stem)
def test_a_fuzz_finding_is_refused_cleanly(path):
    CHECKS[path.name.split("-")[0]](path.read_bytes())
