"""PyTorch -> ONNX with a dynamic batch axis, gear-trt metadata, onnx.checker and a parity check.

Exporter policy (see docs/deploy.md and the TensorRT reference):
  * default: the TorchScript exporter (dynamo=False) at opset 17, the newest opset TensorRT 8.5/8.6
    (JetPack 5/6.0) parse; one self-contained file (weights inside);
  * dynamo=True: torch.export-based exporter (needs onnxscript), opset >= 18, for TensorRT 10+.
After export the file must pass onnx.checker (full check) and match PyTorch in onnxruntime on fresh
random inputs and, when given, real images; past the tolerance export fails with ArtifactError
rather than leaving a wrong model behind.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from gear_trt import __version__
from gear_trt.artifacts.checkpoint import checkpoint_classes
from gear_trt.artifacts.meta import DeployMeta, deploy_meta_for
from gear_trt.artifacts.onnx_meta import set_meta
from gear_trt.artifacts.preprocess import preprocess_images
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.io import atomic_write_bytes, sha256_file
from gear_trt.models import load_model
from gear_trt.spec import ModelSpec

PathLike = Union[str, "os.PathLike[str]"]

TORCHSCRIPT_OPSET = 17  # TensorRT 8.5/8.6 parse up to 17
DYNAMO_MIN_OPSET = 18  # torchlib's lowest opset
DYNAMO_OPSET = 18
MAX_OPSET = 20  # TorchScript exporter's ceiling in torch 2.14
PARITY_RTOL = 1e-4  # of the largest reference logit
PARITY_ATOL = 1e-5
BATCH_DIM = "batch"


@dataclasses.dataclass(frozen=True)
class ParityResult:
    name: str  # "random" or "real"
    batch: int
    max_abs_diff: float
    tolerance: float
    top1_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclasses.dataclass(frozen=True)
class ParityReport:
    results: tuple[ParityResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "results": [dataclasses.asdict(r) for r in self.results]}


def _check_opset(opset: int, dynamo: bool) -> None:
    if dynamo and opset < DYNAMO_MIN_OPSET:
        raise ConfigError(f"the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer, not {opset}",
                          f"pass opset>={DYNAMO_MIN_OPSET} (TensorRT 10+), or use the TorchScript exporter (dynamo=False) for opset 17 / TensorRT 8.x")
    if not 13 <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset} is outside the supported range 13..{MAX_OPSET}", "use opset 17 (TensorRT 8.5+) or 18..20 (TensorRT 10+)")


def _export_torchscript(model: nn.Module, example: torch.Tensor, meta: DeployMeta, opset: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is deprecated; it is the one that writes opset 17.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript.*")
        # The TorchScript exporter writes to file objects too; torch's type hint names paths only.
        torch.onnx.export(
            model, (example,), buf, dynamo=False, opset_version=opset, export_params=True,  # type: ignore[arg-type]
            input_names=[meta.input_name], output_names=[meta.output_name],
            dynamic_axes={meta.input_name: {0: BATCH_DIM}, meta.output_name: {0: BATCH_DIM}},
        )
    return buf.getvalue()


def _export_dynamo(model: nn.Module, example: torch.Tensor, meta: DeployMeta, opset: int) -> bytes:
    from gear_trt._deps import optional_import

    optional_import("onnxscript")  # a clear install hint instead of torch's ModuleNotFoundError
    batch = torch.export.Dim(BATCH_DIM, min=1, max=65536)
    program = torch.onnx.export(
        model, (example,), dynamo=True, opset_version=opset, external_data=False, optimize=True,
        input_names=[meta.input_name], output_names=[meta.output_name], dynamic_shapes=({0: batch},),
    )
    if program is None:  # pragma: no cover - torch returns the ONNXProgram when dynamo=True
        raise ArtifactError("the dynamo exporter returned no model", "export with dynamo=False")
    return program.model_proto.SerializeToString()


def _inline_initializer_identities(model: Any) -> None:
    """Drop Identity nodes that only alias an initializer (the TorchScript exporter's de-duplication).

    Quantizers expect Conv biases and weights to be initializers; behind an Identity they are left in
    float and the layer is not quantized.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        node.input[:] = [alias.get(x, x) for x in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    stale = [v for v in graph.value_info if v.name in alias]
    for v in stale:
        graph.value_info.remove(v)


def _check_graph(model: Any, meta: DeployMeta, opset: int, where: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{where}: onnx.checker rejects the exported model: {str(exc).splitlines()[0]}", "report this as a bug; try the other exporter (--dynamo / no --dynamo)") from None
    got = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if got != opset:
        raise ArtifactError(f"{where}: exported opset {got}, expected {opset}", "choose an opset the exporter supports")
    inputs = [i for i in model.graph.input if i.name == meta.input_name]
    if not inputs:
        raise ArtifactError(f"{where}: the model has no input named {meta.input_name!r}", "report this as a bug")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[0].dim_value:  # a fixed batch has dim_value > 0; dynamic has dim_param
        raise ArtifactError(f"{where}: input batch axis is not dynamic", "report this as a bug")


def export_onnx(model: nn.Module, spec: ModelSpec, meta: DeployMeta, path: PathLike, *, opset: Optional[int] = None, dynamo: bool = False,
                real_inputs: Optional[torch.Tensor] = None, parity: bool = True, rtol: float = PARITY_RTOL, atol: float = PARITY_ATOL,
                seed: int = 0) -> Path:
    """Export `model` (any device, any mode; it is not modified) to a self-contained ONNX file at `path`.

    opset defaults to 17 for the TorchScript exporter and 18 for dynamo. `real_inputs` are normalised
    float32 NCHW images used, with a fresh random batch, for the parity check against PyTorch in
    onnxruntime; past rtol * max|logit| + atol the export raises ArtifactError and writes nothing.
    """
    import onnx

    opset = opset if opset is not None else (DYNAMO_OPSET if dynamo else TORCHSCRIPT_OPSET)
    _check_opset(opset, dynamo)
    if meta.preprocess.input_size != spec.input_size:
        raise ConfigError(f"metadata input size {meta.preprocess.input_size} differs from the spec's {spec.input_size}", "build the metadata with deploy_meta_for(spec, ...)")
    path = Path(path)
    cpu_model = copy.deepcopy(model).cpu().eval()  # export never touches the caller's model or its mode
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2, spec.in_channels, spec.input_size, spec.input_size, generator=gen)
    lineage = {**meta.lineage, "exporter": "dynamo" if dynamo else "torchscript", "opset": opset, "torch": torch.__version__, "gear_trt": __version__}
    meta = dataclasses.replace(meta, lineage=lineage)
    with torch.inference_mode(False), torch.no_grad():
        data = (_export_dynamo if dynamo else _export_torchscript)(cpu_model, example, meta, opset)
    proto = onnx.load_from_string(data)
    _inline_initializer_identities(proto)
    proto.producer_name, proto.producer_version = "gear-trt", __version__
    proto.doc_string = f"gear-trt {spec.family} {spec.hash} ({meta.precision})"
    set_meta(proto, meta)
    _check_graph(proto, meta, opset, str(path))
    payload = proto.SerializeToString()
    if parity:
        inputs = [("random", torch.randn(8, spec.in_channels, spec.input_size, spec.input_size, generator=gen))]
        if real_inputs is not None:
            inputs.append(("real", real_inputs.detach().float().cpu()))
        report = check_parity(cpu_model, payload, inputs, rtol=rtol, atol=atol)
        _raise_on_mismatch(report, str(path))
    atomic_write_bytes(path, payload)
    return path


def check_parity(model: nn.Module, onnx_model: Union[PathLike, bytes], inputs: Sequence[tuple[str, torch.Tensor]], *,
                 rtol: float = PARITY_RTOL, atol: float = PARITY_ATOL) -> ParityReport:
    """Compare PyTorch logits with onnxruntime's (CPU, full graph optimisation) on each named input batch."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
    session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    model = model.eval()
    results = []
    for name, x in inputs:
        with torch.no_grad():
            ref = model(x.to(next(model.parameters()).device)).float().cpu().numpy()
        got = session.run(None, {in_name: np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)})[0]
        diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
        tol = atol + rtol * float(np.max(np.abs(ref)))
        agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
        results.append(ParityResult(name, int(x.shape[0]), diff, tol, agree))
    return ParityReport(tuple(results))


def _raise_on_mismatch(report: ParityReport, where: str) -> None:
    for r in report.results:
        if not r.ok:
            raise ArtifactError(
                f"{where}: ONNX output differs from PyTorch on {r.name} inputs (max |diff| {r.max_abs_diff:.3g} > tolerance {r.tolerance:.3g}, "
                f"top-1 agreement {r.top1_agreement:.1%}); nothing was written",
                "report this as a bug; meanwhile try the other exporter (--dynamo / no --dynamo)")


def export_checkpoint(checkpoint: PathLike, path: PathLike, *, opset: Optional[int] = None, dynamo: bool = False,
                      real_images: Optional[torch.Tensor] = None, lineage: Optional[Mapping[str, Any]] = None, parity: bool = True) -> Path:
    """Export a gear-trt checkpoint (.pt) to fp32 ONNX; `real_images` (uint8 NHWC) feed the parity check."""
    checkpoint = Path(checkpoint)
    model, spec, payload = load_model(checkpoint)
    classes = checkpoint_classes(payload, spec)
    metrics = payload.get("metrics") or {}
    info: dict[str, Any] = {
        "checkpoint_sha256": sha256_file(checkpoint),
        "stage": payload.get("stage", checkpoint.stem),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))} if isinstance(metrics, Mapping) else {},
    }
    info.update(lineage or {})
    meta = deploy_meta_for(spec, classes, checkpoint=checkpoint.name, lineage=info)
    real = preprocess_images(real_images, meta.preprocess) if real_images is not None else None
    return export_onnx(model, spec, meta, path, opset=opset, dynamo=dynamo, real_inputs=real, parity=parity)
