"""A small watchdog process that cancels the daemon job when the plug-in dies before the job ends.

Why a process: when the user presses the cancel button of a plug-in's progress bar, GIMP does not
tell the plug-in; it writes a quit message and SIGKILLs the plug-in 10 ms later
(app/plug-in/gimpplugin-progress.c -> gimp_plug_in_close). Nothing inside the plug-in can react to
that, so the job would keep the GPU busy for nobody. The guard is started in its own session (GIMP
kills the plug-in, or at most its process group) and holds the read end of a pipe: the plug-in
writes ``done`` when it no longer needs the job; end-of-file without ``done`` means the plug-in is
gone, and the guard sends the Cancel RPC. The same covers a crash or GIMP quitting mid-job.

The token travels over the pipe, never on the command line (other users can read argv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DONE = b"done\n"


class Guard:
    """The plug-in's end of the pipe."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc

    def finish(self) -> None:
        """The job ended (or was never submitted): the guard exits without cancelling."""
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(DONE)
            self._proc.stdin.close()
        except OSError:
            pass  # the guard already went away: nothing to stop


def spawn(job_ids: list[str], address: str | None, token: str | None, client_id: str | None = None) -> Guard | None:
    """Start the guard for ``job_ids``, submitted by the client ``client_id`` (a daemon where jobs
    belong to the client that submitted them lets only that client cancel); None (and a note on
    stderr) if it cannot start."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    # the guard imports this package and the same grpcio (vendored, installed) as the plug-in
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in sys.path if p])
    kwargs: dict = {}
    if os.name == "nt":
        # no console window, and out of GIMP's reach when it terminates the plug-in
        kwargs["creationflags"] = 0x08000000 | 0x00000200  # CREATE_NO_WINDOW | NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.cancel_guard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            **kwargs,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"job_ids": list(job_ids), "address": address, "token": token,
                                     "client_id": client_id}).encode() + b"\n")
        proc.stdin.flush()
    except OSError as e:
        print(f"dermis: could not start the cancel guard ({e}); cancelling from GIMP's progress bar "
              "will not stop the daemon job", file=sys.stderr)
        return None
    return Guard(proc)


def main() -> int:
    header = sys.stdin.buffer.readline()
    if not header:
        return 0
    job = json.loads(header)
    rest = sys.stdin.buffer.read()  # blocks until the plug-in writes "done" or dies
    if rest == DONE:
        return 0
    from ._client import client

    failed = 0
    try:
        # the submitting client's id when the plug-in's connection had one
        same_client = {"client_id": job["client_id"]} if job.get("client_id") else {}
        with client.Client(job["address"], job["token"], **same_client) as c:
            for job_id in job["job_ids"]:
                try:
                    c.cancel(job_id)
                except client.ClientError as e:  # e.g. it had already ended: cancel the others
                    print(f"dermis cancel guard: could not cancel job {job_id}: {e}", file=sys.stderr)
                    failed += 1
    except client.ClientError as e:
        print(f"dermis cancel guard: could not reach the daemon: {e}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
