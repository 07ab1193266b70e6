"""DeployMeta in an ONNX file's metadata_props (key "gear_trt"), read and written in one place."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from gear_trt.deploy_meta import METADATA_KEY, DeployMeta
from gear_trt.errors import ArtifactError

if TYPE_CHECKING:
    import onnx

PathLike = Union[str, "os.PathLike[str]"]


def set_meta(model: "onnx.ModelProto", meta: DeployMeta) -> "onnx.ModelProto":
    """Store `meta` under "gear_trt" in `model.metadata_props` (replacing an older entry); returns `model`."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())
    return model


def get_meta(model: "onnx.ModelProto", where: str = "ONNX model") -> DeployMeta:
    """The DeployMeta stored in `model`; ArtifactError if there is none."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            return DeployMeta.from_json(p.value)
    raise ArtifactError(f"{where} carries no gear-trt metadata (metadata_props key {METADATA_KEY!r})",
                        "export it with `gear-trt export` so it records its preprocessing and classes")


def read_meta(path: PathLike) -> DeployMeta:
    """DeployMeta of an ONNX file, read without loading its weights."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError: both mean "not a readable ONNX file"
        raise ArtifactError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})", "re-export it with `gear-trt export`") from None
    return get_meta(model, str(path))


def write_meta(path: PathLike, meta: DeployMeta) -> None:
    """Replace the metadata of the ONNX file at `path` in place (atomically)."""
    import onnx

    from gear_trt.io import atomic_write_bytes

    model = onnx.load(os.fspath(path))
    atomic_write_bytes(path, set_meta(model, meta).SerializeToString())
