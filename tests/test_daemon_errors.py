"""The daemon refuses what it must, says why, and keeps serving: tokens, malformed uploads, unknown
presets and jobs, missing weights, binding; health checking and reflection answer."""

from __future__ import annotations

import zlib

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pipeline import InvalidParameter
from proto.client import Client, Rejected, Unauthenticated
from proto.dermis.v1 import dermis_pb2 as pb
from proto.dermis.v1 import dermis_pb2_grpc as pb_grpc

from ._daemon_helpers import TOKEN, client, raw_image, request, start

AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def stub(daemon):
    channel = grpc.insecure_channel(daemon.address)
    yield pb_grpc.DermisStub(channel)
    channel.close()


def _header(w=8, h=4, c=3, depth=8, data=b"", crc=None, **kw):
    kw.setdefault("preset", "lite")
    return pb.JobHeader(image=pb.PixelFormat(width=w, height=h, channels=c, bit_depth=depth),
                        image_bytes=len(data), image_crc32=zlib.crc32(data) if crc is None else crc, **kw)


def _chunks(data: bytes, blob=pb.BLOB_IMAGE, size=1 << 20, start=0):
    return [pb.SubmitRequest(chunk=pb.Chunk(blob=blob, offset=start + o, data=data[o:o + size]))
            for o in range(0, len(data), size)]


def _refused(stub, messages, code=grpc.StatusCode.INVALID_ARGUMENT) -> str:
    with pytest.raises(grpc.RpcError) as e:
        stub.Submit(iter(messages), metadata=AUTH, timeout=30)
    assert e.value.code() == code, e.value.details()
    assert e.value.details()  # a sentence for the user
    return e.value.details()


PIX = bytes(range(96))  # 8x4 RGB, 8-bit


@pytest.mark.parametrize("case, messages, says", [
    ("chunk first", [pb.SubmitRequest(chunk=pb.Chunk(blob=pb.BLOB_IMAGE, data=b"x"))], "starts with a JobHeader"),
    ("bad checksum", [pb.SubmitRequest(header=_header(data=PIX, crc=12345)), *_chunks(PIX)],
     "checksum does not match"),
    ("missing chunks", [pb.SubmitRequest(header=_header(data=PIX)), *_chunks(PIX[:40])], "chunks are missing"),
    ("gap between chunks", [pb.SubmitRequest(header=_header(data=PIX)), *_chunks(PIX[:40]),
                            *_chunks(PIX[50:], start=50)], "in order without gaps"),
    ("size does not match", [pb.SubmitRequest(header=_header(data=PIX[:90])), *_chunks(PIX[:90])],
     "is 96 bytes, but the header announces 90"),
    ("too many bytes", [pb.SubmitRequest(header=_header(data=PIX)), *_chunks(PIX + b"xx")], "more than the 96"),
    ("0x0", [pb.SubmitRequest(header=_header(0, 0, data=b""))], "empty (0x0)"),
    ("absurd size", [pb.SubmitRequest(header=_header(100_000, 100_000))], "at most"),
    ("channels", [pb.SubmitRequest(header=_header(2, 2, 5, data=bytes(20)))], "channels must be"),
    ("bit depth", [pb.SubmitRequest(header=_header(2, 2, 3, 12, data=bytes(18)))], "bit_depth must be 8 or 16"),
    ("unknown preset", [pb.SubmitRequest(header=_header(data=PIX, preset="nope")), *_chunks(PIX)],
     "unknown preset 'nope'"),
    ("unknown setting", [pb.SubmitRequest(header=_header(data=PIX, overrides={"grain.nope": "1"}))],
     "no parameter 'nope'"),
    ("region outside", [pb.SubmitRequest(header=_header(data=PIX, region=pb.Region(x=50, y=50, width=4, height=4)))],
     "lies outside the 8x4 image"),
    ("empty region", [pb.SubmitRequest(header=_header(data=PIX, region=pb.Region(x=0, y=0, width=0, height=4)))],
     "is empty"),
    ("undeclared mask", [pb.SubmitRequest(header=_header(data=PIX)), *_chunks(PIX), *_chunks(bytes(32), pb.BLOB_MASK)],
     "the header says there is none"),
    ("missing mask", [pb.SubmitRequest(header=_header(data=PIX, has_mask=True, mask_crc32=zlib.crc32(bytes(32)))),
                      *_chunks(PIX)], "0 of 32 mask bytes"),
    ("oversized chunk", [pb.SubmitRequest(header=_header(1024, 1024, 3, data=bytes(3 << 20))),
                         *_chunks(bytes(3 << 20), size=2 << 20)], "chunks carry 1 to 1,048,576 bytes"),
    ("two headers", [pb.SubmitRequest(header=_header(data=PIX)), pb.SubmitRequest(header=_header(data=PIX))],
     "exactly one header"),
    ("bad job id", [pb.SubmitRequest(header=_header(data=PIX, job_id="../../etc"))], "is not valid"),
    ("seed too big", [pb.SubmitRequest(header=_header(data=PIX, seed=2**63))], "seed must be below"),
])
def test_malformed_uploads_are_invalid_argument_and_the_daemon_keeps_serving(stub, daemon, case, messages, says):
    details = _refused(stub, messages)
    assert says in details, details
    with client(daemon) as c:  # the daemon still serves
        assert c.run(request(raw_image(8, 8), preset="lite")).width == 16
    assert daemon.queue.jobs(include_finished=True)[-1].state.value == "done"


def test_missing_weights_is_failed_precondition_with_one_line_per_file(daemon):
    with client(daemon) as c, pytest.raises(Rejected) as e:
        c.submit(request(raw_image(8, 8), preset="needs-weights"))
    assert e.value.code == "missing_weights"
    assert str(e.value).splitlines() == [
        "Missing weights: preset 'needs-weights' cannot run without 1 model file (the 'lite' preset needs none):",
        "  - skin_detail: upscale_models/1x-ITF-SkinDiffDetail-Lite-v1.pth (20.1 MB)"]


def test_unknown_job_is_not_found(daemon):
    with client(daemon) as c:
        for call in (lambda: c.cancel("no-such-job"), lambda: list(c.watch("no-such-job"))):
            with pytest.raises(Rejected) as e:
                call()
            assert e.value.code == "not_found" and "no job 'no-such-job'" in str(e.value)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_calls_without_the_right_token_are_unauthenticated(daemon, token, monkeypatch):
    monkeypatch.delenv("DERMIS_TOKEN", raising=False)
    with Client(daemon.address, token, timeout=10) as c:
        for call in (c.info, lambda: c.submit(request(raw_image(8, 8), preset="lite")),
                     lambda: list(c.watch("x")), c.list_jobs):
            with pytest.raises(Unauthenticated) as e:
                call()
            assert e.value.code == "unauthenticated" and "token" in str(e.value)
    channel = grpc.insecure_channel(daemon.address)
    health = health_pb2_grpc.HealthStub(channel)
    md = (("authorization", f"Bearer {token}"),) if token else ()
    with pytest.raises(grpc.RpcError) as e:
        health.Check(health_pb2.HealthCheckRequest(), metadata=md, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    assert daemon.queue.jobs(include_finished=True) == []


def test_health_and_reflection_answer(daemon):
    channel = grpc.insecure_channel(daemon.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "dermis.v1.Dermis"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), metadata=AUTH, timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="dermis.v1.Dermis")]
    listed, files = list(refl.ServerReflectionInfo(iter(requests), metadata=AUTH, timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"dermis.v1.Dermis", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    fd = descriptor_pb2.FileDescriptorProto.FromString(files.file_descriptor_response.file_descriptor_proto[0])
    assert fd.package == "dermis.v1"
    methods = {m.name for s in fd.service for m in s.method}
    assert methods == {"Submit", "Watch", "Cancel", "GetServerInfo", "ListJobs", "UnloadModels", "FetchModels",
                       "FindFaces"}
    channel.close()


def test_server_info_lists_presets_weights_and_limits(daemon):
    with client(daemon) as c:
        info = c.info()
    assert info.api_version == 1 and info.device.startswith("CPU") and info.vram_total == 0
    names = {p.name for p in info.presets}
    assert {"lite", "supir-srpo", "identity", "tiles"} <= names
    lite = next(p for p in info.presets if p.name == "lite")
    assert [s.id for s in lite.stages] == ["resample", "skin_texture", "grain"] and lite.scale == 2.0
    weights = {w.key: w for w in info.weights}
    assert weights["skin_detail"].status == "missing" and weights["skin_detail"].path == ""
    tiles_model = next(w for k, w in weights.items() if k.endswith("4x-tiny-Compact.pth"))
    assert tiles_model.status == "found"
    assert info.max_pixels >= 8192 * 8192 and "u16-pixels" in info.capabilities


def test_listen_on_other_machines_needs_allow_remote(short_tmp, test_presets):
    with pytest.raises(InvalidParameter, match="--allow-remote"):
        start(short_tmp, listen="0.0.0.0:0")
    d = start(short_tmp, listen="0.0.0.0:0", allow_remote=True)
    try:
        assert d.warnings and "reachable from other machines" in d.warnings[0]
        assert d.address.startswith("127.0.0.1:") and not d.address.endswith(":0")
        with client(d) as c:
            assert c.info().version
    finally:
        d.stop(grace=1.0)


def test_a_second_daemon_on_the_same_runtime_file_is_refused(short_tmp, test_presets):
    runtime = short_tmp / "state" / "daemon.json"
    first = start(short_tmp, runtime_file=runtime)
    try:
        assert (runtime.stat().st_mode & 0o777) == 0o600
        assert (first.token_file.stat().st_mode & 0o777) == 0o600
        with pytest.raises(InvalidParameter, match="another Dermis daemon is running"):
            start(short_tmp, runtime_file=runtime, listen=f"unix:{short_tmp / 'second.sock'}")
        with client(first) as c:  # the first one still works (its socket was not taken over)
            assert c.info().version
    finally:
        first.stop(grace=1.0)
    assert not runtime.exists() and not first.token_file.exists()


def test_tcp_port_in_use_is_a_clear_error(short_tmp, test_presets):
    d = start(short_tmp, listen="127.0.0.1:0")
    try:
        with pytest.raises(InvalidParameter, match="cannot listen"):
            start(short_tmp, listen=d.address, runtime_file=None)
    finally:
        d.stop(grace=1.0)


def test_unload_models_frees_the_cache(daemon):
    arr = raw_image(64, 64)
    with client(daemon) as c:
        c.run(request(arr, preset="tiles", seed=1))
        info = c.info()
        assert len(info.loaded_models) == 1
        (key, nbytes), = info.loaded_models.items()
        assert "4x-tiny-Compact.pth" in key and nbytes > 0
        assert any(w.status == "loaded" for w in info.weights)
        assert c.unload_models() == (1, nbytes)
        assert c.info().loaded_models == {}
    assert np.asarray(daemon.residency.loaded()).size == 0


def test_client_finds_a_restarted_daemon_and_its_new_token(short_tmp, test_presets, monkeypatch):
    from proto.client import default_runtime_file

    for var in ("DERMIS_TOKEN", "DERMIS_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    runtime = default_runtime_file()
    first = start(short_tmp, runtime_file=runtime, token=None)  # a random token, published
    with Client(timeout=10) as c:
        assert c.info().version
        first.stop(grace=1.0)
        second = start(short_tmp, runtime_file=runtime, token=None)  # same socket, new token
        try:
            assert second.token != first.token
            assert c.info().version  # refused once with the old token, then found again
            assert c.run(request(raw_image(8, 8), preset="lite")).width == 16
        finally:
            second.stop(grace=1.0)
