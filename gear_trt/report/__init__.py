"""`gear-trt report`: a run's stages, trade-off plots, corruption heatmaps, width profile and
deployment table as one self-contained HTML page and a Markdown twin."""

from __future__ import annotations

from gear_trt.report.build import SECTION_TITLES, build_report, load_run

__all__ = ["SECTION_TITLES", "build_report", "load_run"]
