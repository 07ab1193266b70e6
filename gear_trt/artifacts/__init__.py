"""What travels with a model and is read by everyone: deploy metadata, ONNX metadata, engine
sidecars and the engine compatibility rule, weights-only checkpoints, the preprocessing rule.

No torch, onnx or tensorrt at import (functions that need torch import it), so the deployment
runtime, the CLI and the C++ cross-checks can all use it. It imports only spec, io and errors.
"""

from gear_trt.artifacts.checkpoint import checkpoint_classes, checkpoint_spec, load_checkpoint, plain, save_checkpoint
from gear_trt.artifacts.compat import check_onnxruntime_compat, check_tensorrt_compat, normalize_compute_capability
from gear_trt.artifacts.meta import CIFAR_MEAN, CIFAR_STD, FORMAT, METADATA_KEY, DeployMeta, Preprocess, deploy_meta_for
from gear_trt.artifacts.onnx_meta import get_meta, read_meta, set_meta, write_meta
from gear_trt.artifacts.preprocess import preprocess, preprocess_images
from gear_trt.artifacts.sidecar import Sidecar, make_sidecar, read_sidecar, sidecar_path, write_sidecar

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "FORMAT", "METADATA_KEY", "DeployMeta", "Preprocess", "deploy_meta_for",
    "get_meta", "read_meta", "set_meta", "write_meta",
    "Sidecar", "make_sidecar", "read_sidecar", "sidecar_path", "write_sidecar",
    "check_onnxruntime_compat", "check_tensorrt_compat", "normalize_compute_capability",
    "checkpoint_classes", "checkpoint_spec", "load_checkpoint", "plain", "save_checkpoint",
    "preprocess", "preprocess_images",
]
