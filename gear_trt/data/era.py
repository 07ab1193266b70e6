"""ERA (Efficient Robust Augmentation): AugMix batched on the training device.

`ERA(config)(images, generator)` takes float [N, C, H, W] images in [0, 1] (after crop/flip, before
normalisation) and returns AugMix images of the same shape, dtype and device; with `config.jsd` it
returns (clean, view1, view2) for the Jensen-Shannon consistency loss (gear_trt.train.jsd).

Per image and per augmented view: W chains; each chain applies d ops, d drawn in 1..D (AugMix's
"depth -1" behaviour, generalised to 1..D) or exactly D with `random_depth=False`; each op drawn
uniformly from `config.ops` with a magnitude bin drawn uniformly in 0..severity-1 of torchvision's
10-bin tables and a random sign for signed ops. Chains are mixed with Dirichlet(alpha) weights, and
the mixture is blended with the clean image with m ~ Beta(alpha, alpha):
    out = (1 - m) * x + m * sum_k w_k * chain_k(x).
See docs/era.md for the op table and the differences from torchvision's AugMix.

How it stays fast: every random choice is drawn up front in one `torch.rand(N, views, K)` call and
turned into a plan on the CPU with numpy (no device sync, one small copy to the device). Each chain
step then groups the chains by the op they drew: every op runs once, on the gathered rows of its
group, and the five geometric ops share one batched grid_sample with per-image matrices. Chains
that have ended are not touched.

Reproducibility: image i only ever reads row i of that uniform tensor, and a CPU generator fills it
in row-major order, so an image's output depends on (seed, its index, its pixels) alone: a prefix
of a batch gets the same outputs as the whole batch, and other images never change it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gear_trt.errors import ConfigError

ALL_OPS: tuple[str, ...] = (
    "autocontrast", "equalize", "posterize", "rotate", "solarize",
    "shear_x", "shear_y", "translate_x", "translate_y",
)
GEOMETRIC_OPS = frozenset({"rotate", "shear_x", "shear_y", "translate_x", "translate_y"})
SIGNED_OPS = GEOMETRIC_OPS
MAX_SEVERITY = 10  # torchvision's AugMix._PARAMETER_MAX: magnitudes live on 10 bins
INTERPOLATIONS = ("bilinear", "nearest")

# Marsaglia-Tsang proposals per Gamma draw. A fixed count keeps the number of uniforms per image
# fixed (the prefix property); all of them are rejected with probability < 0.05**6 ~ 2e-8, and
# then the draw falls back to the mode of the proposal (d = shape - 1/3).
_GAMMA_TRIES = 6
_UNIFORMS_PER_GAMMA = 3 * _GAMMA_TRIES + 1  # (2 Box-Muller + 1 accept) per try, + 1 for shape < 1

# Op groups: in each chain step every group runs once, on all the chains that drew one of its ops.
_IDENTITY, _GEOMETRIC, _AUTOCONTRAST, _EQUALIZE, _POSTERIZE, _SOLARIZE = range(6)
_GROUP_OF_OP = np.array(
    [{"autocontrast": _AUTOCONTRAST, "equalize": _EQUALIZE, "posterize": _POSTERIZE,
      "solarize": _SOLARIZE}.get(op, _GEOMETRIC) for op in ALL_OPS] + [_IDENTITY],  # index -1: no op
    dtype=np.int64,
)
_OP_ID = {op: i for i, op in enumerate(ALL_OPS)}


@dataclass(frozen=True)
class ERAConfig:
    """AugMix settings. Defaults: the paper's ERA (W, D) = (1, 3), AugMix's severity 3 and alpha 1.

    width: chains per augmented view (W); depth: maximum ops per chain (D); severity: 1..10, the
    magnitude bins drawn from; alpha: Dirichlet/Beta concentration; jsd: also return a second view
    and the clean images for the JSD loss; ops: the op set; random_depth: chain depth uniform in
    1..D (True, AugMix's default) or always D; fill: value outside geometric ops (torchvision's
    AugMix fills 0); interpolation: "bilinear" (torchvision's AugMix default) or "nearest".
    """

    width: int = 1
    depth: int = 3
    severity: int = 3
    alpha: float = 1.0
    jsd: bool = False
    ops: tuple[str, ...] = ALL_OPS
    random_depth: bool = True
    fill: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))  # a list from a config file stays hashable
        if self.width < 1:
            raise ConfigError(f"ERA width must be >= 1, got {self.width}", "set width to 1 (ERA) or 3 (AugMix)")
        if self.depth < 1:
            raise ConfigError(f"ERA depth must be >= 1, got {self.depth}", "set depth to 3 (AugMix's default)")
        if not 1 <= self.severity <= MAX_SEVERITY:
            raise ConfigError(f"ERA severity must be in 1..{MAX_SEVERITY}, got {self.severity}",
                              "use 3 (AugMix's default)")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(f"ERA alpha must be a positive number, got {self.alpha}", "use 1.0 (AugMix's default)")
        if not self.ops:
            raise ConfigError("ERA op set is empty", f"choose ops from {', '.join(ALL_OPS)}")
        unknown = [op for op in self.ops if op not in _OP_ID]
        if unknown:
            raise ConfigError(f"unknown ERA op(s): {', '.join(map(str, unknown))}",
                              f"choose ops from {', '.join(ALL_OPS)}")
        if not 0.0 <= self.fill <= 1.0:
            raise ConfigError(f"ERA fill must be in [0, 1], got {self.fill}", "use 0.0 (torchvision's AugMix fill)")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown ERA interpolation '{self.interpolation}'",
                              f"choose one of {', '.join(INTERPOLATIONS)}")

    @property
    def views(self) -> int:
        """Augmented views per image: 2 with the JSD loss, else 1."""
        return 2 if self.jsd else 1


# ---------------------------------------------------------------------------------------------
# Magnitudes: torchvision's AugMix._augmentation_space, exactly (float32 linspace included).


@functools.lru_cache(maxsize=32)
def magnitude_table(height: int, width: int) -> np.ndarray:
    """[len(ALL_OPS), 10] unsigned magnitude per op and bin, as torchvision's AugMix defines them.

    rotate: degrees; shear_x/y: shear factor (tan of the angle); translate_x/y: whole pixels
    (torchvision truncates with int()); posterize: bits kept; solarize: threshold on the 0..255
    scale; autocontrast/equalize take none (0).
    """
    bins = MAX_SEVERITY
    rows = {
        "shear_x": torch.linspace(0.0, 0.3, bins),
        "shear_y": torch.linspace(0.0, 0.3, bins),
        "translate_x": torch.linspace(0.0, width / 3.0, bins).trunc(),
        "translate_y": torch.linspace(0.0, height / 3.0, bins).trunc(),
        "rotate": torch.linspace(0.0, 30.0, bins),
        "posterize": (4 - (torch.arange(bins) / ((bins - 1) / 4)).round().int()).float(),
        "solarize": torch.linspace(255.0, 0.0, bins),
    }
    table = np.zeros((len(ALL_OPS), bins), dtype=np.float64)
    for op, values in rows.items():
        table[_OP_ID[op]] = values.double().numpy()
    table.setflags(write=False)
    return table


# ---------------------------------------------------------------------------------------------
# Random choices.


@dataclass(frozen=True)
class ERAChoices:
    """Every random choice for a batch (numpy, on the CPU). Shapes use V = views, W = width, D = depth.

    op: int [N, V, W, D], index into ALL_OPS, -1 past the chain's depth; level: int [N, V, W, D], the
    magnitude bin; magnitude: float [N, V, W, D], signed (see magnitude_table for units);
    depth: int [N, V, W]; clean_weight: float [N, V] (1 - m); chain_weight: float [N, V, W]
    (m * Dirichlet weights; clean_weight + chain_weight.sum(-1) == 1).
    """

    op: np.ndarray
    level: np.ndarray
    magnitude: np.ndarray
    depth: np.ndarray
    clean_weight: np.ndarray
    chain_weight: np.ndarray


def _gamma_from_uniforms(shape: float, u: np.ndarray) -> np.ndarray:
    """Gamma(shape, 1) draws from uniforms u[..., _UNIFORMS_PER_GAMMA] (Marsaglia & Tsang, 2000)."""
    if shape == 1.0:  # Gamma(1) is Exp(1): exact from one uniform (AugMix's default alpha)
        return -np.log1p(-u[..., 0])
    boosted = shape if shape >= 1.0 else shape + 1.0  # Gamma(a) = Gamma(a + 1) * U**(1/a) for a < 1
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    tries = u[..., : 3 * _GAMMA_TRIES].reshape(*u.shape[:-1], _GAMMA_TRIES, 3)
    z = np.sqrt(-2.0 * np.log1p(-tries[..., 0])) * np.cos(2.0 * math.pi * tries[..., 1])
    v = (1.0 + c * z) ** 3
    with np.errstate(invalid="ignore", divide="ignore"):
        accept = (v > 0) & (np.log1p(-tries[..., 2]) < 0.5 * z * z + d - d * v + d * np.log(v))
    first = accept.argmax(axis=-1)[..., None]
    draw = np.where(accept.any(axis=-1), d * np.take_along_axis(v, first, axis=-1)[..., 0], d)
    if shape < 1.0:
        draw = draw * (1.0 - u[..., -1]) ** (1.0 / shape)
    return draw


# ---------------------------------------------------------------------------------------------
# The ops, vectorised over a batch of float images in [0, 1]. Per-image parameters are tensors.


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each image channel to [0, 1]; constant channels are left alone."""
    lo, hi = x.flatten(2).aminmax(dim=2)
    span = hi - lo
    flat = span <= 0
    scale = torch.where(flat, torch.ones_like(span), span.reciprocal())[..., None, None]
    offset = torch.where(flat, torch.zeros_like(lo), -lo)[..., None, None] * scale
    return torch.addcmul(offset, x, scale).clamp_(0.0, 1.0)  # (x - lo) * scale in one pass


def _histograms(levels: torch.Tensor) -> torch.Tensor:
    """[rows, 256] int64 counts of the 0..255 integers in each row of `levels`."""
    rows = levels.shape[0]
    if levels.device.type == "cpu":  # bincount is faster on the CPU, but on CUDA it syncs to size its output
        offsets = torch.arange(rows, device=levels.device)[:, None] * 256
        return torch.bincount((levels + offsets).view(-1), minlength=rows * 256).view(rows, 256)
    hist = torch.zeros(rows, 256, dtype=torch.int64, device=levels.device)
    return hist.scatter_add_(1, levels, torch.ones(1, 1, dtype=torch.int64, device=levels.device).expand_as(levels))


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image channel on 0..255 levels (torchvision's/PIL's LUT rule).

    The output is quantised to levels / 255, also for channels that equalisation leaves alone.
    """
    n, c, h, w = x.shape
    levels = (x * 255.0).round_().clamp_(0, 255).to(torch.int64).view(n * c, h * w)
    hist = _histograms(levels)
    # PIL's step: pixels outside the last non-empty bin, over 255; 0 means "leave the channel".
    last = hist.gather(1, levels.amax(dim=1, keepdim=True))
    step = (h * w - last) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp_(0, 255)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    lut = torch.where(step == 0, identity, lut).to(x.dtype).div_(255.0)
    return lut.gather(1, levels).view(n, c, h, w)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits[i]` bits of image i's 0..255 levels (bits 0 gives black, like torchvision)."""
    step = torch.pow(2.0, 8.0 - bits.to(x.dtype)).view(-1, 1, 1, 1)
    levels = (x * 255.0).round_().clamp_(0, 255)
    return levels.div_(step).floor_().mul_(step).div_(255.0)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the pixels of image i at or above threshold[i] (in [0, 1])."""
    return torch.where(x >= threshold.to(x.dtype).view(-1, 1, 1, 1), 1.0 - x, x)


@functools.lru_cache(maxsize=8)
def _base_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[3, H*W]: affine_grid's normalised pixel-centre coordinates (x, y, 1), align_corners=False."""
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width), torch.ones(height, width)])
    return base.view(3, height * width).to(dtype=dtype, device=device)


def affine(x: torch.Tensor, theta: torch.Tensor, *, fill: float = 0.0, interpolation: str = "bilinear") -> torch.Tensor:
    """Warp image i by theta[i], an [N, 2, 3] affine_grid matrix (output -> input, align_corners=False)."""
    n, _, h, w = x.shape
    # F.affine_grid's equivalent as one matrix product: its batched small bmm is ~30x slower on CPU.
    grid = (theta.to(x.dtype).reshape(n * 2, 3) @ _base_grid(h, w, x.dtype, x.device)).view(n, 2, h, w)
    grid = grid.permute(0, 2, 3, 1)
    if fill == 0.0:
        return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    # Sampling x - fill with zero padding and adding fill back blends with a constant fill exactly.
    return F.grid_sample(x - fill, grid, mode=interpolation, padding_mode="zeros", align_corners=False).add_(fill)


def geometric_theta(op: np.ndarray, magnitude: np.ndarray, height: int, width: int) -> np.ndarray:
    """[n, 2, 3] affine_grid matrices for geometric ops (ALL_OPS indices) with signed magnitudes.

    The inverse maps are torchvision's (F.rotate about the centre, F.affine shear about the
    top-left corner with shear = atan(magnitude), translation by int pixels), written in pixel
    coordinates centred on the image and then rescaled to affine_grid's [-1, 1] coordinates.
    """
    n = len(op)
    m = np.zeros((n, 2, 3), dtype=np.float64)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    angle = np.radians(magnitude)
    is_rotate = op == _OP_ID["rotate"]
    m[is_rotate, 0, 0] = m[is_rotate, 1, 1] = np.cos(angle[is_rotate])
    m[is_rotate, 0, 1] = -np.sin(angle[is_rotate])
    m[is_rotate, 1, 0] = np.sin(angle[is_rotate])
    is_shear_x = op == _OP_ID["shear_x"]
    m[is_shear_x, 0, 1] = magnitude[is_shear_x]
    m[is_shear_x, 0, 2] = magnitude[is_shear_x] * height / 2.0
    is_shear_y = op == _OP_ID["shear_y"]
    m[is_shear_y, 1, 0] = magnitude[is_shear_y]
    m[is_shear_y, 1, 2] = magnitude[is_shear_y] * width / 2.0
    is_tx = op == _OP_ID["translate_x"]
    m[is_tx, 0, 2] = -magnitude[is_tx]
    is_ty = op == _OP_ID["translate_y"]
    m[is_ty, 1, 2] = -magnitude[is_ty]
    # Pixel units (centred) -> affine_grid's normalised units.
    m[:, 0, 1] *= height / width
    m[:, 1, 0] *= width / height
    m[:, 0, 2] *= 2.0 / width
    m[:, 1, 2] *= 2.0 / height
    return m


def apply_op(images: torch.Tensor, op: str, magnitude: float = 0.0, *, fill: float = 0.0,
             interpolation: str = "bilinear") -> torch.Tensor:
    """Apply one op with one signed magnitude (units of magnitude_table) to every image of a batch."""
    n, _, h, w = images.shape
    if op in GEOMETRIC_OPS:
        theta = geometric_theta(np.full(n, _OP_ID[op]), np.full(n, float(magnitude)), h, w)
        return affine(images, torch.from_numpy(theta).to(images.device), fill=fill, interpolation=interpolation)
    per_image = torch.full((n,), float(magnitude), device=images.device)
    if op == "posterize":
        return posterize(images, per_image)
    if op == "solarize":
        return solarize(images, per_image / 255.0)
    if op == "autocontrast":
        return autocontrast(images)
    if op == "equalize":
        return equalize(images)
    raise ConfigError(f"unknown ERA op '{op}'", f"choose one of {', '.join(ALL_OPS)}")


# ---------------------------------------------------------------------------------------------
# The plan: per chain step, the rows (chains) each op group applies to, and their parameters.

_OP_GROUPS = (_GEOMETRIC, _AUTOCONTRAST, _EQUALIZE, _POSTERIZE, _SOLARIZE)


@dataclass(frozen=True)
class _Step:
    rows: tuple[np.ndarray, ...]  # per group in _OP_GROUPS: the chain rows it transforms
    theta: np.ndarray  # [geometric rows, 2, 3]
    bits: np.ndarray  # [posterize rows]
    threshold: np.ndarray  # [solarize rows], in [0, 1]


def _plan(choices: ERAChoices, height: int, width: int) -> list[_Step]:
    n, views, chains, depth = choices.op.shape
    rows = n * views * chains  # row r = (image * views + view) * chains + chain
    op = choices.op.reshape(rows, depth)
    magnitude = choices.magnitude.reshape(rows, depth)
    group = _GROUP_OF_OP[op]  # op -1 indexes the trailing identity entry
    steps: list[_Step] = []
    for s in range(depth):
        members = tuple(np.flatnonzero(group[:, s] == g) for g in _OP_GROUPS)
        if not any(len(m) for m in members):
            break  # every chain has ended
        geometric, posterized, solarized = members[0], members[3], members[4]
        steps.append(_Step(
            rows=members,
            theta=geometric_theta(op[geometric, s], magnitude[geometric, s], height, width),
            bits=magnitude[posterized, s],
            threshold=magnitude[solarized, s] / 255.0,
        ))
    return steps


def _to_device(arrays: list[np.ndarray], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Move many small arrays in one (pinned, non-blocking) copy, then split them on the device."""
    flat = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float64)).to(dtype)
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    else:
        flat = flat.to(device)
    pieces = torch.split(flat, [a.size for a in arrays])
    return [p.view(a.shape) for p, a in zip(pieces, arrays)]


# ---------------------------------------------------------------------------------------------


class ERA:
    """Batched AugMix: a callable augment hook, `era(images, generator)`."""

    def __init__(self, config: ERAConfig = ERAConfig()) -> None:
        self.config = config
        self._op_ids = np.array([_OP_ID[op] for op in config.ops], dtype=np.int64)

    def __repr__(self) -> str:
        return f"ERA({self.config})"

    def uniforms_per_image(self) -> int:
        """How many uniforms one image consumes per view (the RNG layout is fixed by the config)."""
        c = self.config
        return c.width + 3 * c.width * c.depth + (c.width + 2) * _UNIFORMS_PER_GAMMA

    def sample_choices(self, n: int, height: int, width: int, generator: torch.Generator) -> ERAChoices:
        """Draw every random choice for n images of height x width.

        One call `torch.rand((n, views, K), generator=generator)` on the generator's device; per image
        and view, the K uniforms are, in order: W chain depths, W*D ops, W*D magnitude bins, W*D
        signs, then W + 2 Gamma draws (W Dirichlet components, then the two of the Beta blend) of
        _UNIFORMS_PER_GAMMA uniforms each. A CUDA generator costs one device-to-host copy (a sync).
        """
        c = self.config
        views, chains, depth = c.views, c.width, c.depth
        drawn = torch.rand((n, views, self.uniforms_per_image()), generator=generator, device=generator.device)
        u = drawn.cpu().numpy().astype(np.float64)
        steps = chains * depth
        u_depth, u_op, u_level, u_sign, u_gamma = np.split(
            u, np.cumsum([chains, steps, steps, steps]), axis=-1)

        def to_int(v: np.ndarray, k: int) -> np.ndarray:  # uniform in [0, 1) -> integer in 0..k-1
            return np.minimum((v * k).astype(np.int64), k - 1)

        chain_depth = 1 + to_int(u_depth, depth) if c.random_depth else np.full(u_depth.shape, depth)
        op = self._op_ids[to_int(u_op, len(self._op_ids))].reshape(n, views, chains, depth)
        level = to_int(u_level, c.severity).reshape(n, views, chains, depth)
        active = np.arange(depth) < chain_depth[..., None]
        op = np.where(active, op, -1)
        table = magnitude_table(height, width)
        signed = np.isin(op, [_OP_ID[o] for o in SIGNED_OPS])
        negative = (u_sign < 0.5).reshape(op.shape) & signed
        magnitude = np.where(active, table[np.maximum(op, 0), level], 0.0) * np.where(negative, -1.0, 1.0)

        gammas = _gamma_from_uniforms(c.alpha, u_gamma.reshape(n, views, chains + 2, _UNIFORMS_PER_GAMMA))
        dirichlet = gammas[..., :chains] / gammas[..., :chains].sum(axis=-1, keepdims=True)
        mix = gammas[..., chains + 1] / (gammas[..., chains] + gammas[..., chains + 1])  # m ~ Beta(alpha, alpha)
        return ERAChoices(op=op, level=level, magnitude=magnitude, depth=chain_depth,
                          clean_weight=1.0 - mix, chain_weight=dirichlet * mix[..., None])

    def __call__(self, images: torch.Tensor, generator: torch.Generator
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_images(images)
        c = self.config
        n, channels, h, w = images.shape
        choices = self.sample_choices(n, h, w, generator)
        if n == 0:
            empty = images.clone()
            return (images, empty, empty.clone()) if c.jsd else empty
        steps = _plan(choices, h, w)
        rows_per_image = c.views * c.width

        # Chains live in row order in x. Each step gathers the rows of one op group, transforms
        # them, and writes them back: rows whose chain has ended are never touched. Step 0 covers
        # every row (depth >= 1) and reads from the input images instead of x.
        index_arrays = [r for step in steps for r in step.rows] + [r // rows_per_image for r in steps[0].rows]
        indices = _to_device(index_arrays, torch.int64, images.device)
        sources = indices[-len(_OP_GROUPS):]
        params = _to_device(
            [a for s in steps for a in (s.theta, s.bits, s.threshold)]
            + [choices.clean_weight, choices.chain_weight], images.dtype, images.device)
        x = images.new_empty((n * rows_per_image, channels, h, w))
        for i, step in enumerate(steps):
            theta, bits, threshold = params[3 * i: 3 * i + 3]
            for j, group in enumerate(_OP_GROUPS):
                if len(step.rows[j]) == 0:
                    continue
                rows = indices[i * len(_OP_GROUPS) + j]
                part = images.index_select(0, sources[j]) if i == 0 else x.index_select(0, rows)
                if group == _GEOMETRIC:
                    part = affine(part, theta, fill=c.fill, interpolation=c.interpolation)
                elif group == _AUTOCONTRAST:
                    part = autocontrast(part)
                elif group == _EQUALIZE:
                    part = equalize(part)
                elif group == _POSTERIZE:
                    part = posterize(part, bits)
                else:
                    part = solarize(part, threshold)
                x.index_copy_(0, rows, part)
        chains = x.view(n, c.views, c.width, channels, h, w)
        clean_weight, chain_weight = params[-2:]
        chains.mul_(chain_weight[..., None, None, None])
        mixed = chains[:, :, 0] if c.width == 1 else chains.sum(dim=2)  # [N, views, C, H, W]
        mixed.addcmul_(images.unsqueeze(1), clean_weight[..., None, None, None]).clamp_(0.0, 1.0)
        if c.jsd:
            return images, mixed[:, 0].contiguous(), mixed[:, 1].contiguous()
        return mixed[:, 0]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"ERA expects float images [N, C, H, W] in [0, 1], got {got}",
                          "apply ERA after converting uint8 images to float (x / 255) and before normalising")
