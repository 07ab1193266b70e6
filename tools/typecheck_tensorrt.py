#!/usr/bin/env python
"""Type-check the TensorRT layer against the real TensorRT API (tensorrt-stubs, TensorRT 10.13).

    pip install --no-deps tensorrt-stubs==10.13.0.35.1 mypy     # --no-deps: its tensorrt pins need NVIDIA's index
    python tools/typecheck_tensorrt.py                          # exit 0 = clean

Why a tool and not a bare `mypy`: tensorrt-stubs installs tensorrt/__init__.pyi without a py.typed
marker (mypy then skips it and, with ignore_missing_imports, silently types `tensorrt` as Any) and
its generated tensorrt.pyi has a few lines that are not valid Python (a parameter named `in`,
required parameters after defaulted ones). This tool copies the stubs to a temporary MYPYPATH,
repairs those lines, runs mypy on the module, and first proves the stubs are in effect: a canary
that uses a name TensorRT does not have must fail to type-check.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["gear_trt/backends/tensorrt.py"]
WORK = ROOT / ".mypy_cache" / "tensorrt-typecheck"  # a stable place, so mypy's cache of the 10k-line stub is reused
# The stubs are used for their types; their own generated oddities are not ours to report.
CONFIG = """[mypy]
python_version = 3.11
follow_imports = silent
disallow_untyped_defs = True
warn_unused_ignores = True
warn_redundant_casts = True
[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
ignore_errors = True
"""
CANARY = "import tensorrt as trt\nflag: trt.BuilderFlag = trt.BuilderFlag.NOT_A_FLAG\n"


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def repair_def(line: str) -> str:
    """Make one generated `def` line valid: rename keyword parameters, give every parameter after a defaulted one a default."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*(->.*)?:\s*)$", line)
    if not m:
        return line
    params, seen_default = [], False
    for p in _split_params(m.group(2)):
        p = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", p)
        bare = p.strip()
        if bare.startswith("*"):
            seen_default = False if bare.startswith("**") else seen_default
        elif "=" in bare:
            seen_default = True
        elif seen_default:
            p = p + " = ..."
        params.append(p)
    return m.group(1) + ",".join(params) + m.group(3)


def unshadow_bool(text: str) -> str:
    """The module defines `bool: DataType` (trt.bool), which shadows the builtin in every annotation."""
    out = []
    for line in text.splitlines():
        out.append(line if line.startswith("bool:") else re.sub(r"(?<![\w.'\"`])bool(?![\w'\"`])", "_builtins.bool", line))
    text = "\n".join(out)
    return re.sub(r"^(from __future__ import annotations\n)", r"\1import builtins as _builtins\n", text, count=1, flags=re.MULTILINE)


def repair_stub(text: str) -> str:
    if re.search(r"^bool:", text, flags=re.MULTILINE):
        text = unshadow_bool(text)
    lines = text.splitlines()
    for _ in range(200):  # one syntax error at a time, until the file parses
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines) + "\n"
        except SyntaxError as exc:
            i = (exc.lineno or 1) - 1
            fixed = repair_def(lines[i])
            if fixed == lines[i]:
                raise SystemExit(f"cannot repair stub line {i + 1}: {lines[i].strip()[:120]}") from None
            lines[i] = fixed
    raise SystemExit("too many syntax errors in the stubs")


def stub_files() -> list[tuple[Path, Path]]:
    """(installed file, path relative to site-packages) of the tensorrt-stubs .pyi files."""
    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        raise SystemExit("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs==10.13.0.35.1") from None
    found = [(Path(str(dist.locate_file(f))), Path(str(f))) for f in dist.files or [] if str(f).endswith(".pyi")]
    if not found:
        raise SystemExit("tensorrt-stubs has no .pyi files")
    return found


def prepare_stubs(dest: Path) -> None:
    for src, rel in stub_files():
        out = dest / rel
        text = repair_stub(src.read_text(encoding="utf-8"))
        if not out.is_file() or out.read_text(encoding="utf-8") != text:  # unchanged files keep mypy's cache valid
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")


def run_mypy(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(work / "stubs")}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(work / "mypy.ini"), "--cache-dir", str(work / "cache"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=TARGETS)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_stubs(WORK / "stubs")
    (WORK / "mypy.ini").write_text(CONFIG)
    with tempfile.TemporaryDirectory(prefix="gear-trt-canary-") as tmp:
        canary = Path(tmp) / "canary.py"
        canary.write_text(CANARY)
        proof = run_mypy([str(canary)], WORK)
    if proof.returncode == 0 or "NOT_A_FLAG" not in proof.stdout:
        print("mypy does not see the TensorRT stubs (a wrong TensorRT name type-checked):\n" + proof.stdout + proof.stderr)
        return 1
    result = run_mypy(args.targets, WORK)
    print((result.stdout + result.stderr).strip())
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
