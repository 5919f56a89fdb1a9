#!/usr/bin/env python3
"""Writes an English prose corpus that exists offline on any machine with CPython 3:
the text of Python's own documentation topics (`pydoc_data.topics`, the Language Reference
prose that `help()` shows), followed by every docstring in the standard library (modules,
classes and functions, files in sorted order), until `--bytes` is reached.

Usage: python3 Benchmarks/tokenizer/corpus.py OUT [--bytes N]
"""
import argparse
import ast
import os
import sys
import sysconfig

from pydoc_data import topics


def docstrings(stdlib):
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "site-packages", "idle_test"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 80:
                        yield doc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--bytes", type=int, default=4_000_000)
    args = parser.parse_args()
    parts = [topics.topics[k] for k in sorted(topics.topics)]
    size = sum(len(p.encode()) for p in parts)
    for doc in docstrings(sysconfig.get_paths()["stdlib"]):
        if size >= args.bytes:
            break
        parts.append(doc)
        size += len(doc.encode()) + 2
    text = "\n\n".join(parts)
    data = text.encode("utf-8")[: args.bytes].decode("utf-8", errors="ignore")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(data)
    print(f"wrote {args.out}: {len(data.encode())} bytes (Python {sys.version.split()[0]} docs topics + stdlib docstrings)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
