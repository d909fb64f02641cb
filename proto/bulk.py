"""Copy-saving encode/decode of the two bulk messages: upload chunks and result chunks.

The generated protobuf classes copy a ``bytes`` field several times on its way in and out of a
message (into the message, into the serialized string, into a new ``bytes`` on access). For a 512 MiB
image that is gigabytes of memory traffic, so the pixel-carrying messages take a shorter road here:

- ``SubmitRequest{chunk: Chunk{blob, offset, data}}`` and ``JobEvent{job_id, seq, result_chunk:
  ResultChunk{offset, data}}`` are encoded with one copy of the data (a join of a small prefix and the
  pixels) and decoded without any (the data comes back as a memoryview into the received message);
- every other message still goes through the generated classes, and the decoders fall back to them.

The encoding is the standard protobuf wire format for those fields (field numbers from dermis.proto);
tests/test_proto.py checks both directions against the protobuf library. Standard library only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# field numbers in dermis.proto
_SUBMIT_CHUNK = 2  # SubmitRequest.chunk
_CHUNK_BLOB, _CHUNK_OFFSET, _CHUNK_DATA = 1, 2, 3  # Chunk
_EVENT_JOB_ID, _EVENT_SEQ, _EVENT_RESULT_CHUNK = 1, 2, 9  # JobEvent
_RESULT_OFFSET, _RESULT_DATA = 1, 2  # ResultChunk
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # wire types


class RawChunk(NamedTuple):
    """A decoded upload chunk (SubmitRequest.chunk)."""

    blob: int
    offset: int
    data: memoryview


class RawResultChunk(NamedTuple):
    """A decoded result chunk event (JobEvent.result_chunk)."""

    job_id: str
    seq: int
    offset: int
    data: memoryview


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> dict[int, Any]:
    """Top-level fields of one message: varints as int, length-delimited as memoryview (last wins)."""
    out: dict[int, Any] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            out[field], pos = _read_varint(buf, pos)
        elif wire_type == _LEN:
            n, pos = _read_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated length-delimited field")
            out[field] = buf[pos:pos + n]
            pos += n
        elif wire_type == _I64:
            pos += 8
        elif wire_type == _I32:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return out


# ------------------------------------------------------------------------------------------ uploads


def encode_chunk(blob: int, offset: int, data: Any) -> bytes:
    """A serialized SubmitRequest carrying one chunk; ``data`` may be any bytes-like (one copy)."""
    n = len(data)
    inner_head = _key(_CHUNK_BLOB, _VARINT) + _varint(blob) + _key(_CHUNK_OFFSET, _VARINT) + _varint(offset) \
        + _key(_CHUNK_DATA, _LEN) + _varint(n)
    return b"".join((_key(_SUBMIT_CHUNK, _LEN), _varint(len(inner_head) + n), inner_head, data))


def _nested(raw: bytes, field: int) -> tuple[memoryview, dict[int, Any], dict[int, Any]] | None:
    """(the message, its fields, the fields of its sub-message ``field``); None when it has none."""
    view = memoryview(raw)
    fields = _fields(view)
    sub = fields.get(field)
    if not isinstance(sub, memoryview):
        return None
    return view, fields, _fields(sub)


def decode_submit(raw: bytes, message_class: Any) -> Any:
    """A SubmitRequest: RawChunk for chunks (no copy of the data), else ``message_class`` parsed."""
    found = _nested(raw, _SUBMIT_CHUNK)
    if found is None:
        return message_class.FromString(raw)
    view, _, chunk = found
    return RawChunk(int(chunk.get(_CHUNK_BLOB, 0)), int(chunk.get(_CHUNK_OFFSET, 0)),
                    chunk.get(_CHUNK_DATA, view[:0]))


# ------------------------------------------------------------------------------------------ results


def encode_result_chunk(job_id: str, seq: int, offset: int, data: Any) -> bytes:
    """A serialized JobEvent carrying one result chunk (one copy of ``data``)."""
    jid = job_id.encode()
    n = len(data)
    inner_head = _key(_RESULT_OFFSET, _VARINT) + _varint(offset) + _key(_RESULT_DATA, _LEN) + _varint(n)
    head = _key(_EVENT_JOB_ID, _LEN) + _varint(len(jid)) + jid + _key(_EVENT_SEQ, _VARINT) + _varint(seq)
    return b"".join((head, _key(_EVENT_RESULT_CHUNK, _LEN), _varint(len(inner_head) + n), inner_head, data))


def decode_event(raw: bytes, message_class: Any) -> Any:
    """A JobEvent: RawResultChunk for result chunks (no copy of the data), else ``message_class``."""
    found = _nested(raw, _EVENT_RESULT_CHUNK)
    if found is None:
        return message_class.FromString(raw)
    view, fields, chunk = found
    job_id = fields.get(_EVENT_JOB_ID, view[:0])
    return RawResultChunk(bytes(job_id).decode(), int(fields.get(_EVENT_SEQ, 0)),
                          int(chunk.get(_RESULT_OFFSET, 0)), chunk.get(_RESULT_DATA, view[:0]))


def serialize(message: Any) -> bytes:
    """Request/response serializer that passes pre-encoded bytes through."""
    return message if isinstance(message, bytes) else message.SerializeToString()
