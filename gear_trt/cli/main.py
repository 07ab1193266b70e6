"""`gear-trt <command>`: dispatch to the command module, turning user errors into one line + exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Any, Sequence

from gear_trt import __version__
from gear_trt.errors import GearError, GearWarning

# name -> (module, one-line description). The single table behind --help and dispatch.
COMMANDS: dict[str, tuple[str, str]] = {
    "grow": ("gear_trt.cli.grow", "run a GEARnn pipeline (backbone -> One-Shot Growth -> ERA) or a baseline"),
    "train": ("gear_trt.cli.train", "train a fixed-size model (the baselines use this)"),
    "inspect": ("gear_trt.cli.inspect", "show a checkpoint's or run's spec, widths, parameters and metrics"),
    "eval": ("gear_trt.cli.eval", "clean and corruption accuracy of a checkpoint, ONNX file or engine"),
    "export": ("gear_trt.cli.export", "export checkpoints to ONNX (fp32, fp16, int8 Q/DQ)"),
    "build-engine": ("gear_trt.cli.build_engine", "build TensorRT engines (or onnxruntime equivalents on CPU)"),
    "bench": ("gear_trt.cli.bench", "latency, throughput, size (and energy) of models and engines"),
    "report": ("gear_trt.cli.report", "HTML/Markdown report of a run: stages, plots, deployment table"),
    "sweep": ("gear_trt.cli.sweep", "run a grid of grow runs (SPEC) as Ray Tune trials, locally or on a cluster; resumable"),
}


def _command_in(argv: Sequence[str]) -> str | None:
    for tok in argv:
        if not tok.startswith("-"):
            return tok if tok in COMMANDS else None
    return None


class _Parser(argparse.ArgumentParser):
    """argparse's errors as the rest are: one line with the fix, exit 2 (no usage block)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} -- fix: see `{self.prog} --help`\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gear-trt",
        description="Grow, train and robustify small CNNs on an edge GPU, and deploy them through ONNX and TensorRT.",
    )
    parser.add_argument("--version", action="version", version=f"gear-trt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    chosen = _command_in(argv)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the command being run pays for importing its module
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (see _Parser): its code, in-process too
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
            return int(module.run(args) or 0)
    except GearError as exc:
        print(f"gear-trt {args.command}: error: {exc.message}" + (f" -- fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return 2
    except Exception as exc:  # a full or read-only disk met outside the run directory's own writes: still one line
        from gear_trt.io import storage_error

        err = storage_error(exc, getattr(exc, "filename", None) or "a file")
        if err is None:
            raise
        print(f"gear-trt {args.command}: error: {err.message} -- fix: {err.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gear-trt {args.command}: interrupted; finished stages and checkpoints are kept (re-run with --resume)", file=sys.stderr)
        return 130


def _one_line_warnings(command: str, show: Any) -> Any:
    """gear-trt's own warnings (skipped images, mismatched class names...) as one line, without source lines."""

    def showwarning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, GearWarning):
            print(f"gear-trt {command}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


if __name__ == "__main__":
    sys.exit(main())
