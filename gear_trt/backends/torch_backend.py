"""PyTorch eager runner: the reference the exported artifacts are compared with."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from gear_trt.artifacts.checkpoint import checkpoint_classes
from gear_trt.artifacts.meta import DeployMeta, deploy_meta_for
from gear_trt.backends.base import Runner
from gear_trt.errors import BackendUnavailable
from gear_trt.models import load_model


class TorchRunner(Runner):
    backend = "torch"
    takes_torch = True

    def __init__(self, model: nn.Module, meta: DeployMeta, *, device: Union[str, torch.device] = "cpu", threads: Optional[int] = None,
                 path: Optional[Union[str, Path]] = None) -> None:
        super().__init__(meta, path=path)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("a CUDA device was asked for, and torch sees none", "use device='cpu'")
        self.threads = threads
        self._source = model
        self.model: Optional[nn.Module] = None
        self._saved_threads: Optional[int] = None

    @classmethod
    def from_checkpoint(cls, path: Union[str, "os.PathLike[str]"], *, device: Union[str, torch.device] = "cpu", threads: Optional[int] = None) -> "TorchRunner":
        model, spec, payload = load_model(path)
        meta = deploy_meta_for(spec, checkpoint_classes(payload, spec), checkpoint=Path(path).name)
        return cls(model, meta, device=device, threads=threads, path=Path(path))

    def _activate(self) -> None:
        self.model = copy.deepcopy(self._source).to(self.device).eval()
        if self.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def _infer(self, x: torch.Tensor) -> np.ndarray:
        assert self.model is not None
        with torch.inference_mode():
            out = self.model(x.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()  # .cpu() synchronises a CUDA device, so timing is complete

    def _deactivate(self) -> None:
        self.model = None
        if self._saved_threads:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "threads": self.threads or torch.get_num_threads()}
