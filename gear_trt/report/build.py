"""`build_report(run_dir)`: one self-contained HTML page and a Markdown twin describing a run.

Reads what the pipeline, eval and bench wrote through RunDir and the typed records of gear_trt.records
(every file but summary.json optional, every value tolerated missing -> "n/a"), builds a list of sections once, and renders that list twice, so the
HTML and the Markdown always say the same thing. The HTML embeds its figures as base64 PNG; the
Markdown links the same PNGs written to `report_files/` beside it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Union

from gear_trt import __version__
from gear_trt.errors import ArtifactError
from gear_trt.io import atomic_write_bytes, atomic_write_text
from gear_trt.records import PRECISION_ORDER, BenchRow, CorruptionEval, RunSummary, StageEntry, mapping, num, run_curve
from gear_trt.rundir import RunDir

NA = "n/a"
SECTION_TITLES = ("Run", "Stages", "Trade-offs", "Time to accuracy", "Robustness by corruption", "Width profile", "Deployment")
# CIFAR-10-C / ImageNet-C order (noise, blur, weather, digital); unknown names follow in file order
CORRUPTION_ORDER = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
MB = 1e6


# --------------------------------------------------------------------------- document model


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align_numbers: bool = True  # right-align numeric cells (off for key/value tables)


@dataclass
class Image:
    slug: str
    png: bytes
    caption: str


@dataclass
class Gallery:
    """Several small figures side by side (the heatmaps)."""

    images: list[Image]


Block = Union[str, Table, Image, Gallery]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


# --------------------------------------------------------------------------- cell formatting


def _pct(value: float | None) -> str:
    return NA if value is None else f"{100 * value:.2f}"


def _fixed(value: float | None, digits: int, scale: float = 1.0) -> str:
    return NA if value is None or not math.isfinite(value) else f"{value / scale:.{digits}f}"


def _count(value: float | None) -> str:
    return NA if value is None else f"{int(value):,}"


def _text(value: Any) -> str:
    return NA if value is None or value == "" else str(value)


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("_")


# --------------------------------------------------------------------------- reading a run


@dataclass
class RunData:
    run_dir: Path
    summary: RunSummary
    manifest: dict[str, Any]
    growth: dict[str, Any] | None
    evals: list[CorruptionEval]
    bench_rows: list[BenchRow]
    notes: list[str]
    compared: list[StageEntry] = field(default_factory=list)  # other runs' final models (--compare)
    compared_curves: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (name, run_curve) of each

    @property
    def stages(self) -> list[StageEntry]:
        return self.summary.stages

    def stage_rank(self, name: Any) -> int:
        return self.summary.rank(name)


def _optional_json(run: RunDir, path: Path, notes: list[str]) -> Any:
    """Parsed JSON, or None with a note when the file is absent or unreadable (optional files)."""
    try:
        return run.read_json(path) if path.is_file() else None
    except ArtifactError as exc:
        notes.append(f"{run.rel(path)}: unreadable ({exc.__context__ or exc.message}); left out")
        return None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory. Only summary.json is required."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist",
                            "pass the directory a `gear-trt grow` or `gear-trt train` run wrote (it holds summary.json)")
    if not run.summary_path.is_file():
        raise ArtifactError(f"{run_dir} has no summary.json, so it is not a finished run directory",
                            "pass a run directory, or finish at least one stage of the run (re-run with --resume)")
    try:
        data = run.read_summary()
    except ArtifactError as exc:
        raise ArtifactError(f"{run.summary_path} is not valid JSON: {exc.__context__ or exc.message}",
                            "re-run the pipeline with --resume to rewrite it") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{run.summary_path} is not a JSON object", "re-run the pipeline with --resume to rewrite it")
    summary = RunSummary.from_dict(data)
    notes: list[str] = []
    manifest = mapping(_optional_json(run, run.manifest_path, notes))
    growth = _optional_json(run, run.growth_path, notes)
    evals = []
    for path in run.eval_files():
        data = _optional_json(run, path, notes)
        record = CorruptionEval.from_dict(data, path.name)
        if record is not None:
            evals.append(record)
        elif data is not None:
            notes.append(f"eval/{path.name}: no per-corruption 'acc' table; left out")
    rows = mapping(_optional_json(run, run.bench_path, notes)).get("rows")
    bench_rows = [r for r in map(BenchRow.from_dict, rows) if r is not None] if isinstance(rows, list) else []
    return RunData(Path(run_dir), summary, manifest, growth if isinstance(growth, dict) else None, evals, bench_rows, notes)


def compared_entry(other: RunData) -> StageEntry:
    """Another run (`load_run`) as one row and one point: its final model at the cost of its whole run (every
    stage was needed to make it). Named after the run directory; kind = "run: <pipeline>"."""
    if not other.stages:
        raise ArtifactError(f"{other.run_dir} lists no finished stages", "compare with a run that finished at least one stage")
    times = [st.seconds for st in other.stages]
    energies = [st.energy_j for st in other.stages]
    return dataclasses.replace(other.stages[-1], name=other.run_dir.resolve().name, kind=f"run: {_text(other.summary.pipeline)}",
                               epochs=sum(st.epochs or 0 for st in other.stages),
                               seconds=None if None in times else sum(t for t in times if t is not None),
                               energy_j=None if None in energies else sum(e for e in energies if e is not None))


# --------------------------------------------------------------------------- sections


def energy_source(run: RunData) -> str | None:
    """The energy meter's description, wherever the pipeline recorded it."""
    for holder in (run.manifest, run.summary.extra):
        for key in ("energy_meter", "energy"):
            value = holder.get(key)
            if isinstance(value, dict) and value.get("source"):
                return str(value["source"])
            if isinstance(value, str) and value:
                return value
    return None


def _run_section(run: RunData) -> Section:
    s = run.summary
    rows = [[k, _text(getattr(s, k))] for k in RunSummary.HEADER]
    rows += [[str(k), str(v)] for k, v in s.extra.items()  # whatever else the pipeline recorded (preset, totals...)
             if k != "energy_meter" and isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    rows.append(["stages", str(len(run.stages))])
    rows.append(["energy meter", energy_source(run) or "not recorded"])
    env = mapping(run.manifest.get("environment") or run.manifest.get("env"))
    rows += [[str(k), str(v)] for k, v in env.items() if isinstance(v, (str, int, float, bool))]
    blocks: list[Block] = [Table(["item", "value"], rows, align_numbers=False)]
    if run.notes:
        blocks.append("Files left out: " + "; ".join(run.notes) + ".")
    return Section("Run", blocks)


def _widths_text(widths: list[int]) -> str:
    return " ".join(str(w) for w in widths) if widths else NA


STAGE_HEADERS = ["stage", "kind", "epochs", "params", "size fp32 (MB)", "size int8 (MB)", "clean acc (%)",
                 "robust acc (%)", "time (s)", "energy (J)", "per-layer widths"]


def _stages_section(run: RunData) -> Section:
    if not run.stages:
        return Section("Stages", ["summary.json lists no stages yet."])
    rows = []
    for st in [*run.stages, *run.compared]:
        rows.append([_text(st.name), _text(st.kind), _count(st.epochs), _count(st.params),
                     _fixed(st.param_bytes.get("fp32"), 3, MB), _fixed(st.param_bytes.get("int8"), 3, MB), _pct(st.clean_acc),
                     _pct(st.robust_acc), _fixed(st.seconds, 1), _fixed(st.energy_j, 1), _widths_text(st.widths)])
    source = energy_source(run)
    has_energy = any(st.energy_j is not None for st in run.stages)
    if has_energy:
        note = f"Energy measured with {source}." if source else "Energy meter not recorded in the manifest."
    else:
        note = "Energy was not measured for any stage (no energy counter on the training machine): times only."
    intro = ("One row per stage and baseline. Time and energy are the stage's own; robust accuracy is the mean "
             "over the corruption set (n/a where not evaluated). Sizes are deployed weight bytes at that precision "
             "(BatchNorm folded).")
    if run.compared:
        intro += (" Rows of kind \"run: ...\" are other runs given with --compare: their final model, with the "
                  "epochs, time and energy of their whole run.")
    return Section("Stages", [intro, Table(STAGE_HEADERS, rows), note])


def stage_points(run: RunData) -> list[Any]:
    """Trade-off points. A pipeline stage costs the time/energy of every stage up to it (its checkpoint
    needs them all); a baseline costs its own, and so does a compared run (its entry already holds
    its whole run's cost). Unknown along the way -> unknown from there on."""
    from gear_trt.report.plots import StagePoint

    points = []
    cum_t: float | None = 0.0
    cum_e: float | None = 0.0
    entries = [(st, st.kind == "baseline") for st in run.stages] + [(st, True) for st in run.compared]
    for st, baseline in entries:
        t, e = st.seconds, st.energy_j
        if baseline:
            time_s, energy = t, e
        else:
            cum_t = None if cum_t is None or t is None else cum_t + t
            cum_e = None if cum_e is None or e is None else cum_e + e
            time_s, energy = cum_t, cum_e
        clean, robust = st.clean_acc, st.robust_acc
        points.append(StagePoint(_text(st.name), baseline, None if st.params is None else float(st.params),
                                 None if clean is None else 100 * clean, None if robust is None else 100 * robust,
                                 time_s, energy))
    return points


def _tradeoff_section(run: RunData) -> Section:
    from gear_trt.report.plots import tradeoff_figure

    points = stage_points(run)
    if not points:
        return Section("Trade-offs", ["Not available: summary.json lists no stages."])
    has_energy = any(p.energy_j is not None for p in points)
    caption = ("Accuracy (top) and robust accuracy (bottom) against model size, training time"
               + (" and training energy. " if has_energy else ". Energy was not measured, so it is not plotted. ")
               + "Blue: the pipeline's stages in order; each costs the time and energy of all stages up to it. "
               "Red squares: baselines" + (" and the other runs compared (their final model at their whole run's cost)"
                                           if run.compared else "") + ", at their own cost.")
    return Section("Trade-offs", [Image("tradeoffs", tradeoff_figure(points), caption)])


def _curves_section(run: RunData) -> Section:
    from gear_trt.report.plots import curves_figure

    series = [(run.run_dir.resolve().name, run_curve(run.summary.to_dict())), *run.compared_curves]
    per_epoch = [(name, points) for name, points in series if any(p["epoch"] is not None for p in points)]
    if not per_epoch:
        return Section("Time to accuracy", ["Not available: no accuracy was recorded after every epoch "
                                            "(the run was made with --curve-images none, or before curves existed)."])
    caption = ("Accuracy after every epoch against cumulative training time (growth included, evaluation excluded), "
               "on the run's probe: a fixed test subset scored clean and once more with each image under one "
               "corruption and severity (--curve-images)."
               + (" One line per run given with --compare too." if run.compared_curves else ""))
    left_out = [name for name, _ in series if all(name != n for n, _ in per_epoch)]
    blocks: list[Block] = [Image("time_to_accuracy", curves_figure(per_epoch), caption)]
    if left_out:
        blocks.append("Left out (no per-epoch accuracies): " + ", ".join(left_out) + ".")
    return Section("Time to accuracy", blocks)


def _eval_key(run: RunData, ev: CorruptionEval) -> tuple[int, int, str, str]:
    p_rank = PRECISION_ORDER.index(ev.precision) if ev.precision in PRECISION_ORDER else len(PRECISION_ORDER)
    return run.stage_rank(ev.model), p_rank, ev.backend or "", ev.file


def _corruption_grid(ev: CorruptionEval) -> tuple[list[str], list[str], list[list[float | None]]]:
    main = ev.acc
    extras = {c: t for c, t in ev.extras.items() if t and any(v is not None for v in t.values())}
    order = {c: i for i, c in enumerate(CORRUPTION_ORDER)}
    names = sorted(main, key=lambda c: order.get(c, len(order)))
    extra_names = sorted(extras, key=lambda c: order.get(c, len(order)))
    sev = sorted({s for t in [*main.values(), *extras.values()] for s in t}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    labels = names + [f"{c} *" for c in extra_names]
    tables = [main[c] for c in names] + [extras[c] for c in extra_names]
    values = [[None if (v := t.get(s)) is None else 100 * v for s in sev] for t in tables]
    return labels, sev, values


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


ROBUST_HEADERS = ["model", "precision", "backend", "clean acc (%)", "mean corruption acc (%)", "severity 1 (%)",
                  "severity 2 (%)", "severity 3 (%)", "severity 4 (%)", "severity 5 (%)", "hardest corruption"]


def _robustness_section(run: RunData) -> Section:
    from gear_trt.report.plots import heatmap_figure

    if not run.evals:
        return Section("Robustness by corruption", ["Not available: no corruption results in eval/ (run `gear-trt eval`)."])
    evals = sorted(run.evals, key=lambda ev: _eval_key(run, ev))
    grids = [_corruption_grid(ev) for ev in evals]
    all_vals = [v for _, _, vals in grids for row in vals for v in row if v is not None]
    vmin = math.floor(min(all_vals, default=0.0) / 10) * 10
    vmax = max(math.ceil(max(all_vals, default=100.0) / 10) * 10, vmin + 10)
    rows, images = [], []
    for ev, (labels, sevs, vals) in zip(evals, grids):
        model, prec, backend = ev.model, ev.precision, _text(ev.backend)
        by_sev = [_pct(_mean([t.get(s) for t in ev.acc.values()])) for s in ("1", "2", "3", "4", "5")]
        per_corr = {c: m for c, t in ev.acc.items() if (m := _mean(list(t.values()))) is not None}
        hardest = min(per_corr, key=lambda c: per_corr[c]) if per_corr else None
        clean, mean = ev.clean_acc, ev.mean_corruption_acc
        rows.append([model, prec, backend, _pct(clean), _pct(mean), *by_sev,
                     NA if hardest is None else f"{hardest} ({100 * per_corr[hardest]:.1f})"])
        title = (f"{model} · {prec} · {backend}\nclean {NA if clean is None else f'{100 * clean:.1f}%'}"
                 f" · corrupted mean {NA if mean is None else f'{100 * mean:.1f}%'}")
        cap = f"{model}, {prec}, {backend}: accuracy (%) per corruption and severity"
        if any(lab.endswith(" *") for lab in labels):
            cap += "; * = extra corruption, not in the mean"
        images.append(Image(_slug("heatmap", ev.file[: -len(".json")]), heatmap_figure(labels, sevs, vals, title, vmin, vmax, len(ev.acc)), cap))
    intro = ("Accuracy per corruption (rows) and severity (columns) for every evaluated model, precision and backend; "
             "one colour scale for all, so cells compare across models. The table gives the means per severity and "
             "the corruption with the lowest mean accuracy.")
    return Section("Robustness by corruption", [intro, Table(ROBUST_HEADERS, rows), Gallery(images)])


def growth_series(growth: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """(group names, [(label, widths)]): widths before growth, then after each shot."""
    shots = [s for s in growth.get("shots", []) if isinstance(s, dict)] if isinstance(growth.get("shots"), list) else []
    before = growth.get("widths_before")
    if not isinstance(before, list) and shots:
        before = shots[0].get("widths_before")
    series: list[tuple[str, Any]] = [("before growth", before)]
    if len(shots) > 1:
        series += [(f"after shot {i + 1}", s.get("widths_after")) for i, s in enumerate(shots)]
    else:
        after = growth.get("widths_after")
        series.append(("after growth", after if isinstance(after, list) else (shots[0].get("widths_after") if shots else None)))
    series = [(label, w) for label, w in series if isinstance(w, list)]
    n = max((len(w) for _, w in series), default=0)
    names = growth.get("group_names")
    groups = [str(g) for g in names] if isinstance(names, list) else []
    groups += [f"group {i}" for i in range(len(groups), n)]
    padded = [(label, [num(v) for v in w] + [None] * (len(groups) - len(w))) for label, w in series]
    return groups, padded


def _width_section(run: RunData) -> Section:
    from gear_trt.report.plots import width_profile_figure

    if run.growth is None:
        return Section("Width profile", ["Not available: this run has no growth.json (no growth stage, or a baseline run)."])
    groups, series = growth_series(run.growth)
    if len(series) < 2 or not groups:
        return Section("Width profile", ["Not available: growth.json holds no widths before and after growth."])
    headers = ["layer group", *(f"{label} (channels)" for label, _ in series), "growth factor"]
    rows = []
    for i, g in enumerate(groups):
        vals = [w[i] for _, w in series]
        b, a = vals[0], vals[-1]
        rows.append([g, *(NA if v is None else f"{v:g}" for v in vals), NA if not b or a is None else f"{a / b:.2f}"])
    totals = [sum(v for v in w if v is not None) for _, w in series]
    rows.append(["total", *(f"{t:g}" for t in totals), f"{totals[-1] / totals[0]:.2f}" if totals[0] else NA])
    settings = {k: v for k, v in run.growth.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    blocks: list[Block] = [
        ("Width (output channels) of each growable layer group before growth and after it; groups that must stay "
         "equal (a residual sum, a depthwise pair) grow together."),
        Image("width_profile", width_profile_figure(groups, series), "Per-group width before and after growth; ×k = growth factor."),
        Table(headers, rows),
    ]
    if settings:
        blocks.append("Growth settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ".")
    return Section("Width profile", blocks)


DEPLOY_HEADERS = ["model", "backend", "precision", "size (MB)", "clean acc (%)", "robust acc (%)", "latency p50 (ms)",
                  "latency p90 (ms)", "latency p99 (ms)", "throughput (img/s)", "energy (mJ/image)"]


def _deployment_section(run: RunData) -> Section:
    from gear_trt.report.plots import DeployPoint, deployment_figure

    if not run.bench_rows:
        return Section("Deployment", ["Not available: no bench.json in this run (run `gear-trt bench`)."])

    def key(r: BenchRow) -> tuple[int, str, int]:
        return run.stage_rank(r.model), r.backend, PRECISION_ORDER.index(r.precision) if r.precision in PRECISION_ORDER else 99

    rows, points = [], []
    for r in sorted(run.bench_rows, key=key):
        lat = r.latency
        speed = r.throughput or lat  # throughput at the larger batch, else at the latency batch
        p50, p90, p99 = (None, None, None) if lat is None else (lat.p50_ms, lat.p90_ms, lat.p99_ms)
        rows.append([_text(r.model), _text(r.backend), _text(r.precision), _fixed(r.size_bytes, 3, MB),
                     _pct(r.clean_acc), _pct(r.corruption_acc), _fixed(p50, 3), _fixed(p90, 3), _fixed(p99, 3),
                     _fixed(None if speed is None else speed.throughput, 1), _fixed(r.joules_per_image, 3, 1e-3)])
        clean, robust = r.clean_acc, r.corruption_acc
        points.append(DeployPoint(_text(r.model), _text(r.backend), _text(r.precision), num(p50),
                                  None if clean is None else 100 * clean, None if robust is None else 100 * robust))
    blocks: list[Block] = [("Every exported model on every backend and precision: size of the deployed artifact, accuracy "
                            "measured through that backend, latency percentiles and energy per image where a meter exists."),
                           Table(DEPLOY_HEADERS, rows)]
    if any(p.latency_ms is not None for p in points):
        blocks.append(Image("deployment", deployment_figure(points),
                            "Accuracy against median latency per backend; colour = model, marker = precision."))
    return Section("Deployment", blocks)


def build_sections(run: RunData) -> list[Section]:
    return [_run_section(run), _stages_section(run), _tradeoff_section(run), _curves_section(run), _robustness_section(run),
            _width_section(run), _deployment_section(run)]


# --------------------------------------------------------------------------- rendering

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1280px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.meta{color:#666;margin-top:0}nav a{margin-right:1rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem}th,td{border:1px solid #ddd;padding:.3rem .55rem}
th{background:#f3f5f8;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafbfc}
figure{margin:1rem 0}figure img{max-width:100%;height:auto}figcaption{color:#555;font-size:.88rem}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:1.2rem}.gallery figure{margin:0}
"""

_NUMERIC = re.compile(r"^-?[\d,]*\.?\d+$")


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if t.align_numbers and (_NUMERIC.match(c) or c == NA) else f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_image(img: Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    cap = html.escape(img.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def render_html(title: str, meta: str, sections: Iterable[Section]) -> str:
    sections = list(sections)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>',
           "<nav>" + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections) + "</nav>"]
    for s in sections:
        out.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, str):
                out.append(f"<p>{html.escape(b)}</p>")
            elif isinstance(b, Table):
                out.append(_html_table(b))
            elif isinstance(b, Image):
                out.append(_html_image(b))
            else:
                out.append('<div class="gallery">' + "".join(_html_image(i) for i in b.images) + "</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |",
             "|" + "|".join("---:" if t.align_numbers and all(_NUMERIC.match(r[i]) or r[i] == NA for r in t.rows) and t.rows else "---"
                            for i in range(len(t.headers))) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(title: str, meta: str, sections: Iterable[Section], assets_dir: str) -> str:
    out = [f"# {title}", "", f"_{meta}_", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            imgs = [b] if isinstance(b, Image) else b.images if isinstance(b, Gallery) else []
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Table):
                out += [_md_table(b), ""]
            for img in imgs:
                out += [f"![{_md_cell(img.caption)}]({assets_dir}/{img.slug}.png)", "", f"*{img.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _images(sections: Iterable[Section]) -> list[Image]:
    found: list[Image] = []
    for s in sections:
        for b in s.blocks:
            found += [b] if isinstance(b, Image) else b.images if isinstance(b, Gallery) else []
    return found


def build_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 compare: Iterable[str | Path] = ()) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md (+ report_files/*.png) for a run.
    Default output: RUN_DIR/report/. `compare`: other run directories whose final models join the
    stage table and the trade-off plots (e.g. the Small baselines of a GEARnn run). Returns (html_path, md_path)."""
    run = load_run(run_dir)
    others = [load_run(other) for other in compare]
    run.compared = [compared_entry(other) for other in others]
    run.compared_curves = [(other.run_dir.resolve().name, run_curve(other.summary.to_dict())) for other in others]
    out = Path(out_dir) if out_dir is not None else RunDir(run.run_dir).report_dir
    sections = build_sections(run)
    s = run.summary
    title = f"gear-trt report: {run.run_dir.resolve().name}"
    meta = (f"{_text(s.pipeline)} · {_text(s.arch)} · data {_text(s.data)} · seed {_text(s.seed)}"
            f" · generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by gear-trt {__version__}")
    assets = out / "report_files"
    images = _images(sections)
    keep = {f"{img.slug}.png" for img in images}
    if assets.is_dir():  # drop figures of models no longer in the run
        for stale in assets.glob("*.png"):
            if stale.name not in keep:
                stale.unlink()
    for img in images:
        atomic_write_bytes(assets / f"{img.slug}.png", img.png)
    html_path = atomic_write_text(out / "report.html", render_html(title, meta, sections))
    md_path = atomic_write_text(out / "report.md", render_markdown(title, meta, sections, assets.name))
    return html_path, md_path
