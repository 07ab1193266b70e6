#!/usr/bin/env python
"""Tabulate the Python API of several TensorRT releases from NVIDIA's public pybind11 sources.

    python tools/trt_api_table.py /path/to/NVIDIA/TensorRT[.git] \
        --ref 8.5=release/8.5 --ref 10.3=release/10.3 --ref 11.1=release/11.1 \
        --out tests/data/tensorrt_api.json

The repository may be a checkout or a bare mirror: files are read with `git show REF:PATH`, so no
work tree is needed and several releases come from one clone. Only names are written (classes and
enums, their members, module-level names, each class's bases), with provenance: repository, ref,
commit and commit date per version. NVIDIA's code itself is never copied.

What it reads, per ref:
  python/src/**/*.cpp               py::class_ / py::enum_ / py::bind_vector declarations and their
                                    .def*/.value chains (including ones continued through a variable,
                                    nested enums and .export_values()), m.def / m.attr module names;
  python/packaging/**/tensorrt/__init__.py   module-level Python names (__version__, helpers).
Preprocessor branches are read as their union (the full `tensorrt` wheel builds every binding).
pybind11's implicit members (an enum's name/value, __init__) are not listed: pybind adds them to all.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

MEMBER_CALLS = ("def", "def_static", "def_property", "def_property_readonly", "def_property_static",
                "def_property_readonly_static", "def_readwrite", "def_readonly", "def_readwrite_static",
                "def_readonly_static", "value")
_MEMBER = re.compile(r"\.\s*(" + "|".join(MEMBER_CALLS) + r")\s*\(\s*\"([^\"]+)\"")
_DECL = re.compile(r"py::(class_|enum_|bind_vector|bind_map)\s*<")
_CHAIN_ON_VAR = re.compile(r"^(\w+)\s*\.\s*(?:" + "|".join(MEMBER_CALLS) + r")\b")
_MODULE_DEF = re.compile(r"^m\s*\.\s*def\s*\(\s*\"(\w+)\"")
_MODULE_ATTR = re.compile(r"^m\s*\.\s*attr\s*\(\s*\"(\w+)\"\s*\)\s*=")


# --- reading a ref ---------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def ref_files(repo: Path, ref: str) -> list[str]:
    names = git(repo, "ls-tree", "-r", "--name-only", ref, "python/").splitlines()
    return [n for n in names if (n.startswith("python/src/") and n.endswith(".cpp"))
            or re.fullmatch(r"python/packaging/(bindings_wheel/)?tensorrt/__init__\.py", n)]


def provenance(repo: Path, ref: str) -> dict[str, str]:
    sha, date = git(repo, "log", "-1", "--format=%H %cI", ref).split()
    return {"ref": ref, "commit": sha, "commit_date": date}


# --- C++ scanning ----------------------------------------------------------------------------------

def strip_comments_and_preprocessor(text: str) -> str:
    """C++ text without comments and # lines; string literals kept intact."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if text.find("\n", i) != -1 else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            out.append(c)
            i += 1
    lines = [line for line in "".join(out).splitlines() if not line.lstrip().startswith("#")]
    return "\n".join(lines)


def statements(text: str) -> Iterator[str]:
    """Pieces of C++ ending in ';' outside parentheses (a lambda body inside .def(...) stays whole)."""
    depth, start, i, n = 0, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c in "{}" and depth == 0 and _alone_on_line(text, i):
            start = i + 1  # a block brace (NVIDIA's style puts them on their own lines), not a brace-init
        elif c == ";" and depth == 0:
            yield text[start:i].strip()
            start = i + 1
        i += 1


def _alone_on_line(text: str, i: int) -> bool:
    line_start = text.rfind("\n", 0, i) + 1
    line_end = text.find("\n", i)
    return text[line_start:line_end if line_end != -1 else len(text)].strip() in ("{", "}", "};", "},")


def _template_args(text: str, open_at: int) -> tuple[list[str], int]:
    """Top-level arguments of the template list opening at text[open_at] == '<', and the index after '>'."""
    depth, args, cur, i = 0, [], "", open_at
    while i < len(text):
        c = text[i]
        if c == "<":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == ">":
            depth -= 1
            if depth == 0:
                args.append(cur.strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(cur.strip())
            cur = ""
            i += 1
            continue
        cur += c
        i += 1
    raise ValueError("unbalanced template argument list")


def _depth0_members(stmt: str) -> Iterator[tuple[str, str]]:
    """(call, name) of each .def*/.value chained at parenthesis depth 0 of the statement."""
    depth_at = []
    depth, i, n = 0, 0, len(stmt)
    in_str: Optional[str] = None
    for i in range(n):
        c = stmt[i]
        depth_at.append(depth)
        if in_str:
            if c == in_str and stmt[i - 1] != "\\":
                in_str = None
            continue
        if c in "\"'":
            in_str = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
    for m in _MEMBER.finditer(stmt):
        if depth_at[m.start()] == 0:
            yield m.group(1), m.group(2)


class Api:
    """Classes (and enums) by Python name, with members and bases; module-level names."""

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.cpp_names: dict[str, str] = {}  # C++ type (last :: part) -> Python name
        self.module: set[str] = set()

    def declare(self, name: str, kind: str, cpp: Optional[str], bases_cpp: list[str]) -> dict[str, Any]:
        entry = self.classes.setdefault(name, {"kind": kind, "members": set(), "bases_cpp": set()})
        entry["bases_cpp"].update(bases_cpp)
        if cpp:
            self.cpp_names.setdefault(cpp, name)
        return entry

    def to_json(self) -> dict[str, Any]:
        classes = {}
        for name, entry in sorted(self.classes.items()):
            bases = sorted({self.cpp_names[b] for b in entry["bases_cpp"] if b in self.cpp_names and self.cpp_names[b] != name})
            classes[name] = {"kind": entry["kind"], "bases": bases, "members": sorted(entry["members"])}
        return {"module": sorted(self.module | {n for n in self.classes if "." not in n}), "classes": classes}


def _last(cpp: str) -> str:
    return re.sub(r"<.*", "", cpp).split("::")[-1].strip()


def scan_cpp(text: str, api: Api) -> None:
    variables: dict[str, str] = {}  # C++ variable holding a py::class_ -> Python class name
    for stmt in statements(strip_comments_and_preprocessor(text)):
        decl = _DECL.search(stmt)
        if decl and decl.start() < 80:  # a declaration starts the statement (maybe after `auto x =`)
            kind = {"class_": "class", "enum_": "enum", "bind_vector": "class", "bind_map": "class"}[decl.group(1)]
            targs, after = _template_args(stmt, decl.end() - 1)
            head = re.match(r"\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*\"(\w+)\"", stmt[after:])
            var_before = re.match(r"^(?:auto\s+)?(\w+)\s*=", stmt)
            if not head:
                continue
            var, scope, name = head.group(1) or (var_before.group(1) if var_before else None), head.group(2), head.group(3)
            owner = variables.get(scope) if scope != "m" else None
            full = f"{owner}.{name}" if owner else name
            entry = api.declare(full, kind, _last(targs[0]) if decl.group(1) in ("class_", "enum_") else None,
                                [_last(t) for t in targs[1:]] if kind == "class" else [])
            if owner:
                api.classes[owner]["members"].add(name)
            if var:
                variables[var] = full
            entry["members"].update(n for _, n in _depth0_members(stmt[after:]))
            if kind == "enum" and owner and re.search(r"\.\s*export_values\s*\(", stmt):
                api.classes[owner]["members"].update(n for c, n in _depth0_members(stmt[after:]) if c == "value")
            continue
        on_var = _CHAIN_ON_VAR.match(stmt)
        if on_var and on_var.group(1) in variables:
            api.classes[variables[on_var.group(1)]]["members"].update(n for _, n in _depth0_members(stmt[len(on_var.group(1)):]))
            continue
        for pattern in (_MODULE_DEF, _MODULE_ATTR):
            m = pattern.match(stmt)
            if m:
                api.module.add(m.group(1))


# --- the Python package's __init__.py ---------------------------------------------------------------

def scan_init(text: str, api: Api) -> None:
    """Top-level names the package's __init__.py defines (its build placeholders made parseable)."""
    tree = ast.parse(re.sub(r"##(\w+)##", r"_\1_", text))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            api.module.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    api.module.add(t.id)


def tabulate(repo: Path, ref: str) -> dict[str, Any]:
    api = Api()
    files = ref_files(repo, ref)
    if not any(f.endswith(".cpp") for f in files):
        raise SystemExit(f"{ref}: no python/src/*.cpp in {repo}")
    for path in sorted(files):
        text = git(repo, "show", f"{ref}:{path}")
        if path.endswith(".cpp"):
            scan_cpp(text, api)
        else:
            scan_init(text, api)
    return {**provenance(repo, ref), "files": len(files), **api.to_json()}


def dump(table: dict[str, Any]) -> str:
    """JSON with one line per class: small, and a diff between two generations reads per class."""
    d = json.dumps
    lines = ["{"] + [f" {d(k)}: {d(v)}," for k, v in table.items() if k != "versions"] + [' "versions": {']
    for vi, (version, t) in enumerate(table["versions"].items()):
        lines.append(f"  {d(version)}: {{")
        lines += [f"   {d(k)}: {d(v)}," for k, v in t.items() if k != "classes"]
        lines.append('   "classes": {')
        items = list(t["classes"].items())
        lines += [f"    {d(name)}: {d(c)}" + ("," if i < len(items) - 1 else "") for i, (name, c) in enumerate(items)]
        lines.append("   }")
        lines.append("  }" + ("," if vi < len(table["versions"]) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a clone or bare mirror of github.com/NVIDIA/TensorRT")
    parser.add_argument("--ref", action="append", required=True, metavar="VERSION=REF", help="e.g. 10.3=release/10.3 (repeat)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", default="https://github.com/NVIDIA/TensorRT", help="recorded as the repository")
    args = parser.parse_args(argv)
    versions = {}
    for item in args.ref:
        version, _, ref = item.partition("=")
        if not ref:
            parser.error(f"--ref {item}: expected VERSION=REF")
        versions[version] = tabulate(args.repo, ref)
    table = {
        "what": "TensorRT Python API names per release, read from NVIDIA's pybind11 sources (names only)",
        "repository": args.source, "generator": "tools/trt_api_table.py",
        "generated": _dt.date.today().isoformat(), "versions": versions,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(table))
    for version, t in versions.items():
        members = sum(len(c["members"]) for c in t["classes"].values())
        print(f"{version}: {t['ref']} @ {t['commit'][:10]} ({t['commit_date'][:10]}): {len(t['classes'])} classes/enums, "
              f"{members} members, {len(t['module'])} module names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
