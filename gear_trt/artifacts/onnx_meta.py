"""DeployMeta in an ONNX file's metadata_props (key "gear_trt"), read and written in one place.

`read_meta(path)` reads the metadata without the onnx package and without parsing the weights: a
ModelProto is a protobuf message, so the scan walks its top-level fields and seeks past all but
`metadata_props` (field 14 of ModelProto in onnx.proto; entries are StringStringEntryProto, key = 1,
value = 2). The deployment runtime therefore opens an ONNX model with onnxruntime alone, and the
freshness checks of `gear-trt export` read a file's lineage without loading it.
"""

from __future__ import annotations

import io
import os
from typing import IO, TYPE_CHECKING, Union

from gear_trt.artifacts.meta import METADATA_KEY, DeployMeta
from gear_trt.errors import ArtifactError

if TYPE_CHECKING:
    import onnx

PathLike = Union[str, "os.PathLike[str]"]
_METADATA_PROPS = 14  # ModelProto.metadata_props
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # protobuf wire types (groups, 3 and 4, are not used by ONNX)
NO_META_FIX = "export it with `gear-trt export` so it records its preprocessing and classes"


class _NotProtobuf(Exception):
    pass


def set_meta(model: "onnx.ModelProto", meta: DeployMeta) -> "onnx.ModelProto":
    """Store `meta` under "gear_trt" in `model.metadata_props` (replacing an older entry); returns `model`."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())
    return model


def get_meta(model: "onnx.ModelProto", where: str = "ONNX model") -> DeployMeta:
    """The DeployMeta stored in an in-memory `model`; ArtifactError if there is none."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return DeployMeta.from_json(p.value, where)
    raise ArtifactError(f"{where} carries no gear-trt metadata (metadata_props key {METADATA_KEY!r})", NO_META_FIX)


def _varint(f: IO[bytes]) -> int:
    value, shift = 0, 0
    while True:
        b = f.read(1)
        if not b or shift > 63:
            raise _NotProtobuf
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7


def _fields(f: IO[bytes], size: int, wanted: int) -> list[bytes]:
    """The payloads of every length-delimited field number `wanted` in a message of `size` bytes."""
    found = []
    end = f.tell() + size
    while f.tell() < end:
        tag = _varint(f)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _NotProtobuf
        if wire == _VARINT:
            _varint(f)
            continue
        n = {_I64: 8, _I32: 4}.get(wire)
        if n is None:
            if wire != _LEN:
                raise _NotProtobuf
            n = _varint(f)
        if f.tell() + n > end:
            raise _NotProtobuf
        if wire == _LEN and field == wanted:
            found.append(f.read(n))
        else:
            f.seek(n, io.SEEK_CUR)
    return found


def read_metadata_props(path: PathLike) -> dict[str, str]:
    """metadata_props of the ONNX file at `path`, without reading its graph or weights."""
    try:
        with open(path, "rb") as f:
            props = {}
            for entry in _fields(f, os.fstat(f.fileno()).st_size, _METADATA_PROPS):
                key, value = (_fields(io.BytesIO(entry), len(entry), n) for n in (1, 2))
                props[key[-1].decode() if key else ""] = value[-1].decode() if value else ""  # the last occurrence wins
            return props
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist", "check the path; `gear-trt export` writes RUN_DIR/onnx/*.onnx") from None
    except (_NotProtobuf, UnicodeDecodeError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable ONNX file ({type(exc).__name__.lstrip('_')})", "re-export it with `gear-trt export`") from None


def read_meta(path: PathLike) -> DeployMeta:
    """DeployMeta of the ONNX file at `path`; ArtifactError if it has none or it is malformed."""
    text = read_metadata_props(path).get(METADATA_KEY)
    if text is None:
        raise ArtifactError(f"{path} carries no gear-trt metadata (metadata_props key {METADATA_KEY!r})", NO_META_FIX)
    return DeployMeta.from_json(text, str(path))


def write_meta(path: PathLike, meta: DeployMeta) -> None:
    """Replace the metadata of the ONNX file at `path` in place (atomically)."""
    import onnx

    from gear_trt.io import atomic_write_bytes

    model = onnx.load(os.fspath(path))
    atomic_write_bytes(path, set_meta(model, meta).SerializeToString())
