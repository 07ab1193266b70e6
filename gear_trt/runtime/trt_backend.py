"""TensorRT backend: a serialized engine run with name-based I/O and execute_async_v3.

Buffers are torch CUDA tensors on a non-default torch stream (no PyCUDA). tensorrt and torch are
imported only when this backend is used. The same code path serves TensorRT 8.5 (JetPack 5)
through 11: name-based tensor I/O and execute_async_v3 exist in all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gear_trt._deps import optional_import
from gear_trt.deploy_meta import DeployMeta
from gear_trt.errors import ArtifactError, BackendUnavailable
from gear_trt.runtime.metadata import check_tensorrt_compat


def load_tensorrt() -> Any:
    """The tensorrt module, or BackendUnavailable. A bare `tensorrt/` folder (left by
    tensorrt-stubs, or a failed wheel install) imports as an empty namespace package: refuse it."""
    trt = optional_import("tensorrt")
    if not hasattr(trt, "Runtime"):
        raise BackendUnavailable(
            f"'tensorrt' imports from {list(getattr(trt, '__path__', []))} but is not the TensorRT library (stubs or a broken install)",
            "install TensorRT: on a Jetson it comes with JetPack (python3-libnvinfer); elsewhere `pip install tensorrt`",
        )
    return trt


def _profile_max_batch(engine: Any, name: str) -> int:
    """Largest batch the engine's first optimization profile accepts for input `name`."""
    if hasattr(engine, "get_tensor_profile_shape"):
        _, _, max_shape = engine.get_tensor_profile_shape(name, 0)
    else:  # TensorRT 8.5 also has the older spelling
        _, _, max_shape = engine.get_profile_shape(0, name)
    return int(max_shape[0])


class TensorRTBackend:
    """Deserializes an engine after checking its sidecar against this TensorRT and GPU."""

    name = "tensorrt"

    def __init__(self, path: Path, meta: DeployMeta, sidecar: Mapping[str, Any], *, device: int = 0, require_same_gpu: bool = True) -> None:
        where = str(path)
        if sidecar.get("backend", "tensorrt") != "tensorrt" or not isinstance(sidecar.get("tensorrt"), dict):
            raise ArtifactError(f"{where}: the sidecar has no 'tensorrt' section, so this is not a TensorRT engine", "load the ONNX file, or rebuild the engine with gear-trt")
        trt = load_tensorrt()
        torch = optional_import("torch")
        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT engines need a CUDA GPU, and torch sees none", "run on the device, or load the ONNX file to use onnxruntime on the CPU")
        self.torch, self.trt = torch, trt
        self.device = torch.device("cuda", device)
        check_tensorrt_compat(
            sidecar["tensorrt"],
            runtime_version=trt.__version__,
            gpu_name=torch.cuda.get_device_name(self.device),
            compute_capability="{}.{}".format(*torch.cuda.get_device_capability(self.device)),
            require_same_gpu=require_same_gpu,
            where=where,
        )
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with torch.cuda.device(self.device):
            self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ArtifactError(f"{where}: TensorRT could not deserialize the engine (see its log above)", "rebuild the engine on this device with `gear-trt build-engine`")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        self._bind(meta, where)

    def _bind(self, meta: DeployMeta, where: str) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name, mode in ((meta.input_name, trt.TensorIOMode.INPUT), (meta.output_name, trt.TensorIOMode.OUTPUT)):
            if name not in names or engine.get_tensor_mode(name) != mode:
                raise ArtifactError(f"{where}: the engine has no {mode.name.lower()} tensor {name!r} (it has {names})", "rebuild the engine from the ONNX file whose metadata it carries")
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise ArtifactError(f"{where}: tensor {name!r} is {engine.get_tensor_dtype(name)}, expected float32 I/O", "rebuild the engine with float32 inputs and outputs")
        shape = list(engine.get_tensor_shape(meta.input_name))
        expected = meta.input_shape
        if len(shape) != 4 or shape[1:] != expected[1:]:
            raise ArtifactError(f"{where}: engine input shape {shape} does not match the metadata's {expected}", "rebuild the engine from the matching ONNX file")
        self.dynamic = shape[0] == -1
        self.max_batch = _profile_max_batch(engine, meta.input_name) if self.dynamic else shape[0]
        self.input_name, self.output_name = meta.input_name, meta.output_name
        self.sample_shape = tuple(shape[1:])

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        outs = []
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for start in range(0, x.shape[0], self.max_batch):
                chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + self.max_batch]))
                n = chunk.shape[0]
                batch = n if self.dynamic else self.max_batch
                inp = torch.zeros((batch,) + self.sample_shape, dtype=torch.float32, device=self.device)
                inp[:n].copy_(chunk, non_blocking=False)
                if self.dynamic:
                    self.context.set_input_shape(self.input_name, tuple(inp.shape))
                out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device=self.device)
                self.context.set_tensor_address(self.input_name, inp.data_ptr())
                self.context.set_tensor_address(self.output_name, out.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise ArtifactError(f"TensorRT failed to run the engine on a batch of {batch}", "see TensorRT's log above; rebuild the engine on this device")
                outs.append(out[:n].cpu())  # synchronizes the stream; inp/out stay alive until then
        return torch.cat(outs).numpy()

    def close(self) -> None:
        self.context = self.engine = self.runtime = None
