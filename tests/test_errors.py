"""One table of error codes (pipeline.errors.ErrorCode): every error names a member, and the daemon's
gRPC status, the CLI's exit status and the watch folder's retry decision all come from it."""

from __future__ import annotations

import inspect

import grpc
import pytest

import daemon.errors
import pipeline.errors
from daemon.cli.entry import exit_status, report_error
from daemon.server.servicer import status_for
from pipeline.errors import DermisError, ErrorCode, Fix
from proto.client_types import ClientError, DaemonUnavailable, Rejected

# What the daemon answered before the table moved into the enum (docs/daemon.md): must not change.
GRPC_STATUS = {
    "invalid_argument": "INVALID_ARGUMENT", "invalid_parameter": "INVALID_ARGUMENT",
    "unknown_preset": "INVALID_ARGUMENT", "corrupt_image": "INVALID_ARGUMENT",
    "unsupported_image": "INVALID_ARGUMENT", "image_too_large": "INVALID_ARGUMENT",
    "missing_weights": "FAILED_PRECONDITION", "wrong_weights": "FAILED_PRECONDITION",
    "stage_unavailable": "FAILED_PRECONDITION", "result_expired": "FAILED_PRECONDITION",
    "queue_full": "RESOURCE_EXHAUSTED", "out_of_memory": "RESOURCE_EXHAUSTED",
    "already_exists": "ALREADY_EXISTS", "not_found": "NOT_FOUND", "cancelled": "CANCELLED",
    "shutting_down": "UNAVAILABLE", "internal": "INTERNAL",
}
# What the watch folder never retried (a second attempt cannot fix these).
NOT_RETRIED = {"invalid_argument", "corrupt_image", "unsupported_image", "image_too_large",
               "invalid_parameter", "unknown_preset", "missing_weights", "wrong_weights",
               "stage_unavailable", "cancelled"}


def _error_classes() -> list[type[DermisError]]:
    found = []
    for module in (pipeline.errors, daemon.errors):
        found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, DermisError) and c.__module__ == module.__name__]
    return found


def test_every_error_class_names_a_member():
    classes = _error_classes()
    assert len(classes) >= 20
    for cls in classes:
        assert isinstance(cls.code, ErrorCode), cls


def test_every_member_has_a_real_status_and_a_wire_string():
    for code in ErrorCode:
        assert isinstance(getattr(grpc.StatusCode, code.status), grpc.StatusCode), code
        assert str(code) == code.value == f"{code}" and code == code.value  # the string on the wire
        assert ErrorCode.of(code.value) is code
    assert ErrorCode.of("from-a-newer-daemon") is ErrorCode.INTERNAL


def test_the_daemon_answers_with_the_same_statuses_as_before():
    for text, status in GRPC_STATUS.items():
        err = DermisError("x")
        err.code = ErrorCode(text)
        assert status_for(err) is getattr(grpc.StatusCode, status), text
    assert status_for(daemon.errors.QueueFull("full")) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_for(pipeline.errors.MissingWeights("k", "d", [])) is grpc.StatusCode.FAILED_PRECONDITION


def test_the_watch_folder_retries_exactly_what_a_retry_can_help():
    for text in GRPC_STATUS:
        assert ErrorCode(text).retryable is (text not in NOT_RETRIED | {"already_exists", "not_found",
                                                                         "result_expired"}), text
    assert not ErrorCode.CRASHED.retryable and ErrorCode.WRITE_FAILED.retryable


def test_a_job_failure_keeps_the_executors_code():
    assert daemon.errors.JobFailed("out_of_memory", "m").code is ErrorCode.OUT_OF_MEMORY
    assert daemon.errors.JobFailed("gibberish", "m").code is ErrorCode.INTERNAL


@pytest.mark.parametrize("err, status", [
    (pipeline.errors.InvalidParameter("bad --set"), 2),
    (pipeline.errors.UnknownPreset("no such preset"), 2),
    (daemon.errors.BadUpload("chunks missing"), 2),
    (pipeline.errors.CorruptImage("in.png is truncated"), 1),
    (pipeline.errors.MissingWeights("sdxl", "SDXL", ["/m"]), 1),
    (pipeline.errors.OutOfMemory("oom"), 1),
    (daemon.errors.InstallError("foreign folder"), 1),
    (DermisError("bug"), 1),
    (Rejected("unknown preset 'x'", "unknown_preset"), 2),
    (DaemonUnavailable("no daemon"), 1),
    (ClientError("closed", "closed"), 1),
])
def test_the_cli_prints_every_error_one_way(err, status, capsys):
    assert report_error(err) == status
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"dermis: error: {str(err).splitlines()[0]}"
    # one hint line, in commands, only where the terminal user has one to run
    hints = [x for x in lines if x.startswith("dermis: hint: ")]
    assert len(hints) == (1 if err.code == "missing_weights" else 0)
    if hints:
        assert "`dermis models get sdxl`" in hints[0] and "`dermis doctor --verbose`" in hints[0]


def test_exit_status_is_2_for_usage_errors_only_as_before():
    """2 when the options must change; a bad input image, missing weights, a limit or a bug is 1."""
    assert {c.value for c in ErrorCode if exit_status(c) == 2} == {
        "invalid_argument", "invalid_parameter", "unknown_preset", "already_exists", "not_found",
        "result_expired", "licence_not_accepted"}
    assert all(exit_status(c) == (2 if c.fix is Fix.REQUEST else 1) for c in ErrorCode)


def test_what_ends_an_error_says_whether_the_user_can():
    assert {c.value for c in ErrorCode if not c.user_fixable} == {
        "queue_full", "shutting_down", "cancelled", "crashed", "internal", "checksum_mismatch",
        "download_failed", "too_many_calls", "upload_stalled", "shared_memory_unavailable"}
    for code in ErrorCode:
        if code.status == "INVALID_ARGUMENT":  # the request is wrong: the user fixes it, a retry does not
            assert code.user_fixable and not code.retryable, code
