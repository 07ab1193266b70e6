"""`gear-trt report RUN_DIR [--out DIR] [--compare RUN ...]`: write report.html (self-contained) and report.md for a run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (holds summary.json)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write the report (default: RUN_DIR/report)")
    parser.add_argument("--compare", metavar="RUN", nargs="+", default=[],
                        help="other run directories (e.g. the Small baselines) whose final models join the table and plots")


def run(args: argparse.Namespace) -> int:
    from gear_trt.report import build_report

    html_path, md_path = build_report(args.run_dir, args.out, compare=args.compare)
    print(f"report: {html_path}")
    print(f"markdown: {md_path} (figures in {md_path.parent / 'report_files'})")
    return 0
