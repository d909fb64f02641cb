"""The daemon's token: made at start, written user-only, required on every call.

Local clients read the token from a 0600 file (the path is in the runtime file), so other users on
the machine, web pages that reach localhost and anything else that cannot read the user's files are
turned away. The interceptor checks ``authorization: Bearer <token>`` in constant time and answers
UNAUTHENTICATED otherwise, with a handler of the same RPC kind so streaming calls fail cleanly too.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from pipeline.files import write_atomic

from .callers import Throttled

log = logging.getLogger("dermis.daemon")

HEADER = "authorization"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from creation, then an atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text.encode("utf-8"), mode=0o600)


class TokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()
        self._refusals = Throttled(log)  # a client in a retry loop must not fill the log

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        given = dict(details.invocation_metadata or ()).get(HEADER, "")
        if hmac.compare_digest(given.encode() if isinstance(given, str) else given, self._expected):
            return handler
        reason = "no token" if not given else "a wrong token"
        self._refusals.log(logging.WARNING, reason, "refused %s: %s", details.method[:80], reason)
        if handler is None:  # unknown method: let gRPC say UNIMPLEMENTED only to authenticated callers
            handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: None)
        return _refusing(handler, f"The Dermis daemon needs its token ({reason} was sent): clients read "
                                  "it from the file named in the daemon's runtime file.")


def _refusing(handler: Any, message: str) -> Any:
    """A handler of the same kind as ``handler`` that only answers UNAUTHENTICATED."""

    def deny(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def deny_stream(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # a generator, as streaming handlers are  # pragma: no cover

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream, **kw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream, **kw)
    return grpc.unary_unary_rpc_method_handler(deny, **kw)
