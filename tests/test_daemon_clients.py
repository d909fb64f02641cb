"""Many clients on one daemon (issue 18, items 2 and 5): jobs belong to the client that submitted
them, Watch streams cannot crowd out control calls, refusals cannot flood the log, and clients on the
same machine move pixels through shared memory (streaming when they cannot)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import zlib

import grpc
import numpy as np
import pytest

import pipeline
from daemon.jobs.queue import JobSpec, Priority
from daemon.server.shm import SharedMemoryDir
from pipeline import images
from proto import shm
from proto.client import Client, Rejected
from proto.dermis.v1 import dermis_pb2 as pb
from proto.dermis.v1 import dermis_pb2_grpc as pb_grpc

from ._daemon_helpers import TOKEN, client, raw_image, request, result_array


@pytest.fixture
def blocked(daemon):
    """The executor busy with an in-process job until the test lets it go: what clients submit waits."""
    gate = threading.Event()

    def image():
        gate.wait(60)
        return images.from_array(raw_image(8, 8))

    daemon.queue.submit(JobSpec(recipe=pipeline.build("lite"), image=image, seed=1, priority=Priority.EDITOR))
    yield gate
    gate.set()


def test_jobs_belong_to_the_client_that_submitted_them(daemon, blocked):
    with client(daemon) as a, client(daemon) as b, Client(daemon.address, TOKEN, admin=True) as admin:
        job = a.submit(request(raw_image(8, 8), preset="lite", seed=3))
        assert [j.job_id for j in a.list_jobs()] == [job]
        assert b.list_jobs() == []  # another editor sees none of it...
        for call in (lambda: b.cancel(job), lambda: list(b.watch(job)), lambda: b.fetch_result(job)):
            with pytest.raises(Rejected) as e:  # ...and cannot cancel, follow or download it
                call()
            assert e.value.code == "not_found", e.value
        with pytest.raises(Rejected) as e:  # nor take its id
            b.submit(request(raw_image(8, 8), preset="lite", seed=3, job_id=job))
        assert e.value.code == "already_exists"
        assert job in [j.job_id for j in admin.list_jobs()]  # `dermis status` sees every job
        with Client(daemon.address, TOKEN, client_id=a.client_id) as again:  # a plug-in that restarted
            assert [j.job_id for j in again.list_jobs()] == [job]
            blocked.set()
            assert again.fetch_result(job).width == 16
        queued = b.submit(request(raw_image(8, 8), preset="lite", seed=4))
        admin.cancel(queued)  # the admin may cancel anyone's job (it may have finished already)
        assert list(b.watch(queued))[-1].kind.value in ("cancelled", "done")


def test_watch_streams_cannot_crowd_out_control_calls(daemon, blocked):
    with client(daemon) as c:
        job = c.submit(request(raw_image(8, 8), preset="lite"))
        other = c.submit(request(raw_image(8, 8), preset="lite"))
        channel = grpc.insecure_channel(daemon.address)
        md = (("authorization", f"Bearer {TOKEN}"), ("dermis-client-id", c.client_id))
        stub = pb_grpc.DermisStub(channel)
        calls = [stub.Watch(pb.WatchRequest(job_id=job), metadata=md) for _ in range(60)]
        try:
            firsts = []
            for call in calls:  # the first event of a stream that got a slot, or its refusal
                try:
                    firsts.append(next(call).WhichOneof("kind"))
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "Watch streams" in e.details()
                    firsts.append("refused")
            assert firsts.count("queued") == 40 and firsts.count("refused") == 20, firsts
            assert c.info().version  # with every Watch slot taken, the control calls still get through
            c.cancel(other)
            assert {j.job_id for j in c.list_jobs()} == {job}
        finally:
            for call in calls:
                call.cancel()
            channel.close()


def test_refusals_are_logged_a_few_lines_at_a_time(daemon, caplog):
    caplog.set_level("WARNING", logger="dermis.daemon")
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.DermisStub(channel)
        for i in range(300):
            with pytest.raises(grpc.RpcError) as e:
                stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=(("authorization", f"Bearer no{i}"),),
                                   timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(lines) <= 3, lines
    assert "a wrong token" in lines[0]


# ------------------------------------------------------------------------------------ shared memory


def _spy(monkeypatch, name: str) -> list:
    """Record the calls of proto.shm.<name> (it still runs)."""
    calls: list = []
    real = getattr(shm, name)

    def spied(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(shm, name, spied)
    return calls


def test_shared_memory_round_trip_equals_streaming(daemon, monkeypatch):
    if daemon.shared_memory is None:
        pytest.skip("no memory file system on this machine")
    folder = daemon.shared_memory.path
    st = folder.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    writes, reads = _spy(monkeypatch, "write_new"), _spy(monkeypatch, "read_and_remove")
    arr = raw_image(512, 1024, 4, 16, seed=5)  # 4 MiB
    with client(daemon) as c:
        shared = result_array(c.run(request(arr, preset="identity", seed=1, output="full")))
    # the client wrote the upload and read the result (the daemon only gave its result file a name)
    assert len(writes) == 1 and len(reads) == 1
    with Client(daemon.address, TOKEN, shared_memory=False) as c:
        streamed = result_array(c.run(request(arr, preset="identity", seed=1, output="full")))
    assert len(writes) == 1 and len(reads) == 1  # streamed both ways
    assert np.array_equal(shared, arr) and np.array_equal(streamed, arr)
    # no upload or handed-out result file left behind; the daemon's own result files stay while it
    # holds the results (result_ttl), and go with the folder when it stops
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["result", "result"]
    daemon.stop(grace=1.0)
    assert not folder.exists()


def test_a_client_whose_files_the_daemon_cannot_see_streams(daemon, monkeypatch, tmp_path):
    """As on another machine: the client writes into a folder of its own; the daemon says it cannot
    use the id, and the client sends the chunks instead (and takes the result as chunks)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    monkeypatch.setattr(shm, "usable_dir", lambda path: elsewhere)
    writes = _spy(monkeypatch, "write_new")
    arr = raw_image(512, 700, 3, 8, seed=2)
    with client(daemon) as c:
        assert np.array_equal(result_array(c.run(request(arr, preset="identity", seed=1, output="full"))), arr)
    assert len(writes) == 1 and list(elsewhere.iterdir()) == []  # tried once, then streamed


def test_a_result_file_the_client_cannot_read_is_fetched_again_as_chunks(daemon, monkeypatch):
    if daemon.shared_memory is None:
        pytest.skip("no memory file system on this machine")
    real_read = shm.read_and_remove
    failed = []

    def unreadable(folder, shm_id, size):
        real_read(folder, shm_id, size)  # collected (and removed), then lost on the way
        failed.append(shm_id)
        raise shm.SharedMemoryError("gone")

    monkeypatch.setattr(shm, "read_and_remove", unreadable)
    arr = raw_image(512, 700, 3, 8, seed=3)
    with client(daemon) as c:
        assert np.array_equal(result_array(c.run(request(arr, preset="identity", seed=1, output="full"))), arr)
    assert len(failed) == 1


def _shared_upload(stub, shm_id: str, data: bytes):
    header = pb.JobHeader(preset="identity", image=pb.PixelFormat(width=256, height=256, channels=4, bit_depth=16),
                          image_bytes=len(data), image_crc32=zlib.crc32(data), shared_memory_id=shm_id)
    return stub.Submit(iter([pb.SubmitRequest(header=header)]), metadata=(("authorization", f"Bearer {TOKEN}"),),
                       timeout=10)


@pytest.mark.parametrize("case", ["not hex", "traversal", "missing", "symlink", "mode 0644", "short"])
def test_the_daemon_takes_only_right_files_by_id_from_its_own_folder(daemon, tmp_path, case):
    if daemon.shared_memory is None:
        pytest.skip("no memory file system on this machine")
    folder = daemon.shared_memory.path
    data = raw_image(256, 256, 4, 16).astype("<u2").tobytes()
    shm_id = shm.new_id()
    target = tmp_path / "outside"
    target.write_bytes(data)
    target.chmod(0o600)
    if case == "not hex":
        shm_id = "X" * 32
    elif case == "traversal":
        shm_id = "../" * 8 + str(target)
    elif case == "symlink":
        (folder / shm_id).symlink_to(target)
    elif case != "missing":
        shm.write_new(folder, [data[:-2] if case == "short" else data])
        written = next(folder.iterdir())
        shm_id = written.name
        if case == "mode 0644":
            written.chmod(0o644)
    with grpc.insecure_channel(daemon.address) as channel:
        with pytest.raises(grpc.RpcError) as e:
            _shared_upload(pb_grpc.DermisStub(channel), shm_id, data)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    assert dict(e.value.trailing_metadata())["dermis-error-code"] == "shared_memory_unavailable"
    assert target.read_bytes() == data and daemon.queue.jobs(include_finished=True) == []


def test_folders_of_killed_daemons_are_removed_at_the_next_start(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    made = SharedMemoryDir.create()
    if made is None:
        pytest.skip("no memory file system on this machine")
    orphan = made.path.parent / f"dermis-{os.getuid()}-{gone}-leftover"
    orphan.mkdir(mode=0o700)
    (orphan / ("0" * 32)).write_bytes(b"x")
    try:
        again = SharedMemoryDir.create()
        assert again is not None and not orphan.exists() and made.path.exists()  # a live daemon's stays
        again.close()
    finally:
        made.close()
        if orphan.exists():
            (orphan / ("0" * 32)).unlink()
            orphan.rmdir()



@pytest.mark.parametrize("step", [1 << 30, 1000])
def test_a_result_file_is_read_whole_and_removed(tmp_path, monkeypatch, step):
    """os.read copies with Python's lock released (an editor's UI thread runs meanwhile); a file larger
    than one read (here: 1000-byte reads) comes back joined, in order."""
    monkeypatch.setattr(shm, "_READ_STEP", step)
    folder = tmp_path / "shm"
    folder.mkdir(mode=0o700)
    data = np.random.default_rng(3).integers(0, 256, 12_345, dtype=np.uint8).tobytes()
    shm_id = shm.write_new(folder, [data[:5000], bytearray(data[5000:])])
    assert shm.read_and_remove(folder, shm_id, len(data)) == data
    assert list(folder.iterdir()) == []
    shm_id = shm.write_new(folder, [data])
    with pytest.raises(shm.SharedMemoryError):
        shm.read_and_remove(folder, shm_id, len(data) + 1)  # the size is checked first
