"""The contract: generated code matches the .proto, runtime floors are documented and pinned, and the
thin client works with nothing but grpcio + protobuf (vendored under another name, as plugins do)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grpc
import pytest
from google import protobuf

from proto import regen

from ._daemon_helpers import TOKEN
from .conftest import REPO

PROTO = REPO / "proto"
# everything a plugin vendors: the client, its types, parser and conversions (not the generator)
CLIENT_FILES = tuple(sorted(p for p in PROTO.glob("*.py") if p.name != "regen.py"))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


def test_committed_generated_code_is_what_grpcio_tools_makes_now():
    assert regen.stale_files() == [], "run python proto/regen.py and commit the result"


def test_generated_grpc_code_imports_its_messages_relatively():
    text = (PROTO / "dermis" / "v1" / "dermis_pb2_grpc.py").read_text()
    assert "from . import dermis_pb2" in text and "from dermis.v1" not in text


def test_runtime_floors_are_documented_pinned_and_met():
    floors = regen.runtime_floors()
    doc = (REPO / "docs" / "daemon.md").read_text()
    for name, version in floors.items():
        assert f"{name}>={version}" in doc, f"docs/daemon.md must state {name}>={version}"
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, version in floors.items():
        pin = next(d for d in deps if re.match(rf"{name}\s*>=", d))
        assert _version(pin.split(">=")[1].split(",")[0]) >= _version(version), pin
    assert _version(protobuf.__version__) >= _version(floors["protobuf"])
    assert _version(grpc.__version__) >= _version(floors["grpcio"])


def _imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), feature_version=(3, 10))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add((node.module or "").split(".")[0])
    return roots


def test_client_source_needs_only_stdlib_grpc_and_protobuf_and_python_3_10():
    for path in CLIENT_FILES:
        tree = ast.parse(path.read_text(), feature_version=(3, 10))  # no 3.11-only syntax
        assert not [n for n in ast.walk(tree) if type(n).__name__ in ("Match", "TryStar")], path
        outside = _imports(path) - set(sys.stdlib_module_names) - {"grpc", "__future__"}
        assert outside == set(), f"{path.name} imports {outside}"
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not any(isinstance(n, ast.Import) and n.names[0].name == "grpc" for n in top_level), \
            "grpc must be imported lazily"


def _vendored_copy(tmp_path: Path) -> Path:
    """proto/ copied as a plugin vendors it: under another top-level package name."""
    vend = tmp_path / "vend"
    shutil.copytree(PROTO, vend / "dermis_vendored", ignore=shutil.ignore_patterns("__pycache__", "regen.py"))
    return vend


def _only_grpc_site(tmp_path: Path) -> Path:
    """A site folder holding nothing but grpcio, protobuf and grpcio's one dependency."""
    site = tmp_path / "site"
    site.mkdir()
    grpc_dir = Path(grpc.__file__).parent
    (site / "grpc").symlink_to(grpc_dir)
    (site / "google").symlink_to(Path(protobuf.__file__).parent.parent)
    import typing_extensions

    (site / "typing_extensions.py").symlink_to(typing_extensions.__file__)
    return site


def _isolated(code: str, paths: list[Path], *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python that sees only the standard library plus ``paths`` (-I -S)."""
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DERMIS_"))}
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, env=env)


FORBIDDEN = ("numpy", "torch", "PIL", "platformdirs", "pipeline", "daemon", "proto", "cv2")


def test_vendored_client_runs_a_job_with_only_grpcio_and_protobuf(tmp_path, daemon):
    code = f"""
        import sys
        for name in ("numpy", "torch", "proto", "pipeline"):  # prove the isolation first
            try:
                __import__(name)
            except ImportError:
                continue
            raise SystemExit(f"{{name}} is importable: the test is not isolated")
        from dermis_vendored.client import Client, JobRequest, EventKind
        pixels = bytes(range(256)) * 16  # 64x64 L
        kinds = []
        with Client(sys.argv[1], sys.argv[2]) as c:
            info = c.info()
            res = c.run(JobRequest(pixels, 64, 64, 1, preset="lite", seed=3, output="full",
                                   client_name="isolated"), on_event=lambda e: kinds.append(e.kind))
        assert (res.width, res.height, res.channels, res.seed) == (128, 128, 1, 3), res
        assert kinds[-1] is EventKind.done
        loaded = sorted(m.split(".")[0] for m in sys.modules)
        bad = [m for m in {FORBIDDEN!r} if m in loaded]
        assert not bad, bad
        print("OK", info.version, len(res.pixels))
    """
    proc = _isolated(code, [_vendored_copy(tmp_path), _only_grpc_site(tmp_path)], daemon.address, TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK 0.1.0 16384")
    assert daemon.queue.counts()["isolated"]["done"] == 1


def test_client_imports_without_grpc_and_explains_on_use(tmp_path):
    code = """
        from dermis_vendored.client import Client, DependencyMissing, JobRequest, default_runtime_file
        JobRequest(b"\\0" * 12, 2, 2, 3)  # requests can be built without grpc
        try:
            Client("unix:/nowhere.sock", "t").info()
        except DependencyMissing as e:
            print(e.code, "|", e)
    """
    proc = _isolated(code, [_vendored_copy(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dependency_missing | ") and "grpcio and protobuf" in proc.stdout


def test_client_reports_no_daemon_clearly(tmp_path, monkeypatch):
    from proto.client import Client, DaemonUnavailable

    monkeypatch.delenv("DERMIS_ADDRESS", raising=False)
    with Client(timeout=1) as c, pytest.raises(DaemonUnavailable, match="dermis serve"):
        c.info()  # no runtime file in the isolated state folder
    with Client(f"unix:{tmp_path}/none.sock", "t", timeout=1) as c, \
            pytest.raises(DaemonUnavailable, match="no socket there"):
        c.info()
    with Client("127.0.0.1:9", "t", timeout=1) as c, pytest.raises(DaemonUnavailable, match="No Dermis daemon answered"):
        c.info()  # nothing listens on the discard port: the deadline passes


@pytest.mark.parametrize("offset, data", [(0, b""), (0, b"abc"), (5 << 30, bytes(range(256)) * 4096),
                                          (2**40 + 3, b"\x00\xff" * 7)])
def test_bulk_chunk_encoding_is_what_protobuf_reads_and_writes(offset, data):
    from proto import bulk
    from proto.dermis.v1 import dermis_pb2 as pb

    fast = bulk.encode_chunk(pb.BLOB_MASK, offset, memoryview(data))
    assert pb.SubmitRequest.FromString(fast) == pb.SubmitRequest(
        chunk=pb.Chunk(blob=pb.BLOB_MASK, offset=offset, data=data))
    raw = pb.SubmitRequest(chunk=pb.Chunk(blob=pb.BLOB_IMAGE, offset=offset, data=data)).SerializeToString()
    chunk = bulk.decode_submit(raw, pb.SubmitRequest)
    assert (chunk.blob, chunk.offset, bytes(chunk.data)) == (pb.BLOB_IMAGE, offset, data)
    header = pb.SubmitRequest(header=pb.JobHeader(job_id="j", preset="lite", image_bytes=12))
    assert bulk.decode_submit(header.SerializeToString(), pb.SubmitRequest) == header

    fast = bulk.encode_result_chunk("job-7", 42, offset, data)
    assert pb.JobEvent.FromString(fast) == pb.JobEvent(
        job_id="job-7", seq=42, result_chunk=pb.ResultChunk(offset=offset, data=data))
    raw = pb.JobEvent(job_id="job-7", seq=42, result_chunk=pb.ResultChunk(offset=offset, data=data))
    got = bulk.decode_event(raw.SerializeToString(), pb.JobEvent)
    assert (got.job_id, got.seq, got.offset, bytes(got.data)) == ("job-7", 42, offset, data)
    progress = pb.JobEvent(job_id="j", seq=3, progress=pb.Progress(stage="s", step=2, steps=9, fraction=0.5))
    assert bulk.decode_event(progress.SerializeToString(), pb.JobEvent) == progress


def test_bulk_decoding_refuses_truncated_messages():
    from proto import bulk
    from proto.dermis.v1 import dermis_pb2 as pb

    raw = bulk.encode_chunk(pb.BLOB_IMAGE, 0, b"x" * 100)
    with pytest.raises(ValueError, match="truncated"):
        bulk.decode_submit(raw[:50], pb.SubmitRequest)


def test_client_checks_a_request_before_sending_it():
    from proto.client import Client, JobRequest, Rejected

    with Client("unix:/nonexistent.sock", "t") as c:  # never reached: the request is refused first
        for bad, says in [(JobRequest(b"\0" * 11, 2, 2, 3), "needs 12 bytes"),
                          (JobRequest(b"\0" * 12, 2, 2, 3, mask=b"\0"), "one per pixel"),
                          (JobRequest(b"\0" * 12, 2, 2, 3, output="png"), "output must be"),
                          (JobRequest(b"\0" * 12, 2, 2, 3, priority="urgent"), "priority must be"),
                          (JobRequest(b"", 0, 0, 3), "empty")]:
            with pytest.raises(Rejected, match=says) as e:
                c.submit(bad)
            assert e.value.code == "invalid_argument"


def test_one_override_parser_for_every_client(tmp_path, portrait_path, capsys):
    """proto/overrides.py parses `--set`, watch settings and the GIMP field alike, with one sentence."""
    from daemon.cli import main
    from daemon.jobs.recipe import overrides_from
    from pipeline import InvalidParameter
    from plugin_gimp import job
    from proto.overrides import OverrideError, parse_overrides, split_overrides

    assert parse_overrides(["a.b=1", " c = x=y ", "a.b=2"]) == {"a.b": "2", "c": "x=y"}  # later wins
    assert split_overrides(" a.b=1, c=2;d.e = 3\n\n") == ["a.b=1", "c=2", "d.e = 3"]
    with pytest.raises(OverrideError, match="not ''"):
        parse_overrides([" "])  # a blank --set (a blank item in the GIMP field is only spacing)
    for bad in ("grain.strength", "=1"):
        with pytest.raises(OverrideError) as e:
            parse_overrides([bad])
        sentence = str(e.value)
        assert sentence == f"a setting override is key=value (e.g. grain.strength=0.05), not {bad.strip()!r}."
        with pytest.raises(InvalidParameter) as daemon_side:
            overrides_from([bad])
        assert str(daemon_side.value) == sentence
        # in the GIMP field a separator only splits items when a key= follows it (values may hold
        # commas and new lines, as with --set), so the bad item is tested alone
        with pytest.raises(job.SettingsError) as gimp_side:
            job.Settings(overrides=bad).override_map()
        assert str(gimp_side.value) == f"Overrides: {sentence}"
    assert job.Settings(overrides="grain.amount=1, grain.strength").override_map()[0] == \
        {"grain.amount": "1, grain.strength"}  # what `--set grain.amount=1, grain.strength` would send too
    out = tmp_path / "o.png"
    assert main(["upscale", str(portrait_path), "-o", str(out), "--preset", "lite", "--quiet",
                 "--set", "grain.strength"]) == 2
    assert capsys.readouterr().err == "dermis: error: a setting override is key=value " \
                                      "(e.g. grain.strength=0.05), not 'grain.strength'.\n"
    assert not out.exists()
