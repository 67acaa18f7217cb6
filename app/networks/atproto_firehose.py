"""Decoding the AT Protocol repo firehose (``com.atproto.sync.subscribeRepos``).

Each websocket message is one binary frame: two DAG-CBOR objects back to back, a header
``{"op": 1, "t": "#commit"}`` (``op: -1`` for an error) and a body. A ``#commit`` body lists
``ops`` (``{"action": "create"|"update"|"delete", "path": "collection/rkey", "cid"}``) and
carries the new records in ``blocks``, a CAR file keyed by CID. Records come out in the JSON
data model the rest of the code (and Jetstream) uses: CID links as ``{"$link": "bafy…"}``,
bytes as ``{"$bytes": "<base64>"}``.

Pure functions over bytes; :class:`FrameError` names what was wrong with a frame.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import libipld

# Multicodec and multihash codes a record CID may use (DAG-CBOR records, raw blobs, sha-256).
_CODEC_DAG_CBOR = 0x71
_CODEC_RAW = 0x55
_HASH_SHA256 = 0x12


class FrameError(ValueError):
    """A frame that is not a well-formed firehose message."""


@dataclass(frozen=True, slots=True)
class RepoOp:
    """One record change of a commit. ``record`` is None for deletes (and for creates whose
    block was left out of the frame)."""

    action: str
    collection: str
    rkey: str
    cid: str | None
    record: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded firehose frame.

    ``kind`` is the message type (``#commit``, ``#identity``, ``#account``, ``#info``,
    ``#sync``…) or ``error`` for an error frame (then ``error`` and ``message`` are set).
    ``seq`` is the cursor position of the event, when it has one. ``ops`` holds the decoded
    operations of a ``#commit``, limited to the collections asked for.
    """

    kind: str
    body: dict[str, Any]
    seq: int | None = None
    did: str | None = None
    error: str | None = None
    message: str | None = None
    ops: list[RepoOp] = field(default_factory=list)


def _is_cid(data: bytes) -> bool:
    """True when ``data`` is exactly a binary CIDv1 of a record or blob (sha-256)."""
    if len(data) != 36 or data[0] != 1:
        return False
    try:
        info = libipld.decode_cid(data)
    except ValueError:
        return False
    return (
        info.get("codec") in (_CODEC_DAG_CBOR, _CODEC_RAW)
        and info.get("hash", {}).get("code") == _HASH_SHA256
        and info.get("hash", {}).get("size") == 32
    )


def cid_string(data: Any) -> str | None:
    """The text form of a CID given as binary (as DAG-CBOR links decode) or as text."""
    if isinstance(data, str):
        return data or None
    if isinstance(data, bytes | bytearray):
        try:
            return libipld.encode_cid(bytes(data))
        except ValueError:
            return None
    return None


def to_json_model(value: Any) -> Any:
    """A decoded DAG-CBOR value in the atproto JSON data model.

    DAG-CBOR links decode to the CID's bytes, indistinguishable from byte strings, so bytes
    that are exactly a sha-256 CIDv1 of a record or blob become ``{"$link": …}`` (blob refs,
    the only links in post records) and other bytes become ``{"$bytes": …}``.
    """
    if isinstance(value, dict):
        return {k: to_json_model(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_model(v) for v in value]
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if _is_cid(data):
            return {"$link": libipld.encode_cid(data)}
        return {"$bytes": base64.b64encode(data).decode().rstrip("=")}
    return value


def decode_frame(data: bytes | str, collections: frozenset[str] | None = None) -> Frame:
    """Decode one binary firehose message.

    For ``#commit`` frames, the ops on ``collections`` (all when None) are decoded with their
    records; the CAR file is parsed only when such an op needs a record. Raises
    :class:`FrameError` for anything malformed.
    """
    if not isinstance(data, bytes | bytearray):
        raise FrameError("firehose frames are binary; got a text message")
    try:
        parts = libipld.decode_dag_cbor_multi(bytes(data))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"undecodable DAG-CBOR: {exc}") from exc
    if len(parts) != 2 or not all(isinstance(p, dict) for p in parts):
        raise FrameError(f"expected a header and a body, got {len(parts)} objects")
    header, body = parts
    op = header.get("op")
    if op == -1:
        error = body.get("error")
        message = body.get("message")
        return Frame(
            kind="error",
            body=body,
            error=error if isinstance(error, str) else "Unknown",
            message=message if isinstance(message, str) else None,
        )
    kind = header.get("t")
    if op != 1 or not isinstance(kind, str):
        raise FrameError(f"unknown frame header {header!r}")
    seq = body.get("seq")
    seq = seq if type(seq) is int else None
    did = body.get("repo") if kind == "#commit" else body.get("did")
    did = did if isinstance(did, str) else None
    ops = _commit_ops(body, collections) if kind == "#commit" else []
    return Frame(kind=kind, body=body, seq=seq, did=did, ops=ops)


def _commit_ops(body: dict[str, Any], collections: frozenset[str] | None) -> list[RepoOp]:
    raw_ops = body.get("ops")
    if not isinstance(raw_ops, list):
        raise FrameError("#commit without an ops list")
    wanted = []
    for raw in raw_ops:
        if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
            raise FrameError("#commit op without a path")
        collection, _, rkey = raw["path"].partition("/")
        if not rkey or (collections is not None and collection not in collections):
            continue
        wanted.append((raw, collection, rkey))
    if not wanted:
        return []
    blocks: dict[bytes, Any] = {}
    if any(raw.get("action") in ("create", "update") for raw, _, _ in wanted):
        car = body.get("blocks")
        if not isinstance(car, bytes | bytearray) or not car:
            raise FrameError("#commit creates records but carries no blocks")
        try:
            _, blocks = libipld.decode_car(bytes(car))
        except (ValueError, RecursionError) as exc:
            raise FrameError(f"undecodable CAR blocks: {exc}") from exc
    ops = []
    for raw, collection, rkey in wanted:
        action = raw.get("action")
        if action not in ("create", "update", "delete"):
            raise FrameError(f"unknown op action {action!r}")
        cid_raw = raw.get("cid")
        record = None
        if action != "delete" and isinstance(cid_raw, bytes | bytearray):
            block = blocks.get(bytes(cid_raw))
            record = to_json_model(block) if isinstance(block, dict) else None
        ops.append(
            RepoOp(
                action=action,
                collection=collection,
                rkey=rkey,
                cid=cid_string(cid_raw),
                record=record,
            )
        )
    return ops
