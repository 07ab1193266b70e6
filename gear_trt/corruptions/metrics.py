"""Corruption-benchmark results and metrics.

robust accuracy (mean corruption accuracy): the mean of the accuracies over the 15 corruptions
x 5 severities (Hendrycks & Dietterich 2019); the 4 extras are reported apart, never in it.
mCE: mean over the 15 corruptions of  sum_s E(c, s) / sum_s E_ref(c, s)
relative mCE: mean over the 15 of  sum_s (E(c, s) - E_clean) / sum_s (E_ref(c, s) - E_ref_clean)
where E are error rates and E_ref those of a named reference model (a CorruptionResults too).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict

from gear_trt.corruptions.params import CORRUPTIONS, EXTRAS, SEVERITIES
from gear_trt.errors import ArtifactError, ConfigError

FORMAT = "gear-trt-corruption-results/1"

Table = Dict[str, Dict[int, float]]  # typing.Dict: evaluated at import (Python 3.8)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class CorruptionResults:
    """Accuracies of one model under the corruption benchmark.

    acc[corruption][severity] holds the benchmark's 15 corruptions, extras[...] the held-out 4.
    Accuracies are fractions in [0, 1]; clean_acc is None when no clean set was evaluated
    (the official CIFAR-C files hold none).
    """

    clean_acc: float | None
    acc: Table = field(default_factory=dict)
    extras: Table = field(default_factory=dict)
    preset: str = "cifar"
    seed: int = 0
    n_images: int = 0
    model: str = ""
    source: str = "generated"  # or "official-npy" for the published CIFAR-10-C / 100-C files

    # ------------------------------------------------------------ summaries

    def corruption_acc(self, name: str) -> float:
        """Accuracy on one corruption, averaged over its severities."""
        table = self.acc if name in self.acc else self.extras
        if name not in table:
            raise ConfigError(f"no results for corruption {name!r}", f"evaluate it first (have: {', '.join(self.names)})")
        return sum(table[name].values()) / len(table[name])

    @property
    def names(self) -> list[str]:
        return list(self.acc) + list(self.extras)

    @property
    def complete(self) -> bool:
        """True when all 15 corruptions at all 5 severities were evaluated."""
        return all(set(self.acc.get(c, {})) >= set(SEVERITIES) for c in CORRUPTIONS)

    @property
    def mean_corruption_acc(self) -> float | None:
        """The paper's robust accuracy: mean over the benchmark corruptions and severities evaluated
        (see `complete`); None when none was."""
        return _mean([a for c in CORRUPTIONS if c in self.acc for a in self.acc[c].values()])

    @property
    def extras_mean_acc(self) -> float | None:
        """Mean accuracy over the extras evaluated; never part of mean_corruption_acc."""
        return _mean([a for c in EXTRAS if c in self.extras for a in self.extras[c].values()])

    @property
    def severity_acc(self) -> dict[int, float]:
        """Mean accuracy per severity over the benchmark corruptions."""
        out: dict[int, float] = {}
        for s in SEVERITIES:
            values = [self.acc[c][s] for c in CORRUPTIONS if c in self.acc and s in self.acc[c]]
            if values:
                out[s] = sum(values) / len(values)
        return out

    def summary(self, reference: CorruptionResults | None = None) -> dict[str, Any]:
        """The headline numbers; mCE and relative mCE when a reference model is given."""
        out: dict[str, Any] = {
            "model": self.model,
            "preset": self.preset,
            "n_images": self.n_images,
            "clean_acc": self.clean_acc,
            "mean_corruption_acc": self.mean_corruption_acc,
            "complete": self.complete,
            "extras_mean_acc": self.extras_mean_acc,
        }
        if reference is not None:
            out["reference"] = reference.model or "unnamed"
            out["mce"] = mce(self, reference)
            both_clean = self.clean_acc is not None and reference.clean_acc is not None
            out["relative_mce"] = relative_mce(self, reference) if both_clean else None
        return out

    # ------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        def table(t: Table) -> dict[str, dict[str, float]]:
            return {c: {str(s): float(a) for s, a in sorted(v.items())} for c, v in t.items()}

        return {
            "format": FORMAT,
            "model": self.model,
            "preset": self.preset,
            "seed": self.seed,
            "n_images": self.n_images,
            "source": self.source,
            "clean_acc": self.clean_acc,
            "mean_corruption_acc": self.mean_corruption_acc,
            "complete": self.complete,
            "extras_mean_acc": self.extras_mean_acc,
            "acc": table(self.acc),
            "extras": table(self.extras),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorruptionResults:
        if d.get("format") != FORMAT:
            raise ArtifactError(f"not a corruption results file (format {d.get('format')!r})",
                                f"pass a JSON written by CorruptionResults.save ({FORMAT})")

        def table(t: dict[str, dict[str, float]]) -> Table:
            return {c: {int(s): float(a) for s, a in v.items()} for c, v in t.items()}

        clean = d.get("clean_acc")
        return cls(clean_acc=None if clean is None else float(clean), acc=table(d.get("acc", {})), extras=table(d.get("extras", {})),
                   preset=d.get("preset", "cifar"), seed=int(d.get("seed", 0)), n_images=int(d.get("n_images", 0)),
                   model=d.get("model", ""), source=d.get("source", "generated"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        from gear_trt.io import atomic_write_text

        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorruptionResults:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ArtifactError(f"corruption results {path} not found", "run the corruption sweep first") from None
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"corruption results {path} is not valid JSON: {exc}", "re-run the sweep") from None
        return cls.from_dict(data)


def _paired_errors(results: CorruptionResults, reference: CorruptionResults) -> dict[str, list[tuple[float, float]]]:
    pairs: dict[str, list[tuple[float, float]]] = {}
    for c in CORRUPTIONS:
        mine = results.acc.get(c, {})
        theirs = reference.acc.get(c, {})
        if not mine:
            continue
        missing = sorted(set(mine) - set(theirs))
        if missing:
            raise ConfigError(f"reference model {reference.model or 'unnamed'!r} has no {c} results at severities {missing}",
                              "evaluate the reference on the same corruptions and severities")
        pairs[c] = [(1.0 - mine[s], 1.0 - theirs[s]) for s in sorted(mine)]
    if not pairs:
        raise ConfigError("no benchmark corruption results to compare", "run the sweep over the 15 corruptions first")
    return pairs


def corruption_errors(results: CorruptionResults, reference: CorruptionResults) -> dict[str, float]:
    """CE per corruption: the model's summed error over severities over the reference's."""
    out = {}
    for c, pairs in _paired_errors(results, reference).items():
        denom = sum(r for _, r in pairs)
        if denom <= 0:
            raise ConfigError(f"reference model makes no error on {c}", "pick a weaker reference model")
        out[c] = sum(e for e, _ in pairs) / denom
    return out


def mce(results: CorruptionResults, reference: CorruptionResults) -> float:
    """Mean corruption error relative to `reference` (1.0 = as robust as the reference)."""
    ce = corruption_errors(results, reference)
    return sum(ce.values()) / len(ce)


def relative_mce(results: CorruptionResults, reference: CorruptionResults) -> float:
    """Mean of the error increase over clean error, relative to the reference's increase."""
    if results.clean_acc is None or reference.clean_acc is None:
        raise ConfigError("relative mCE needs the clean accuracy of both models", "evaluate the clean test set too")
    clean, ref_clean = 1.0 - results.clean_acc, 1.0 - reference.clean_acc
    values = []
    for c, pairs in _paired_errors(results, reference).items():
        denom = sum(r - ref_clean for _, r in pairs)
        if denom <= 0:
            raise ConfigError(f"reference model loses no accuracy under {c}", "pick a reference model that degrades under corruption")
        values.append(sum(e - clean for e, _ in pairs) / denom)
    return sum(values) / len(values)


def distortion_stats(clean: Any, corrupted: Any) -> tuple[float, float]:
    """How far corrupted uint8 images are from the clean ones: (mean over images of the PSNR in dB,
    capped at 100 for identical images; mean absolute pixel difference on the 0..255 scale).
    These are the statistics the fidelity test compares with the official generator's."""
    import numpy as np

    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(corrupted, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"clean images {a.shape} and corrupted images {b.shape} differ in shape", "pass matching batches")
    diff = (b - a).reshape(len(a), -1)
    mse = np.maximum((diff ** 2).mean(axis=1), 255.0 ** 2 * 1e-10)
    return float((10.0 * np.log10(255.0 ** 2 / mse)).mean()), float(np.abs(diff).mean())
