#!/usr/bin/env python3
"""Writes the held-out prose of the network-space translation measurement (Benchmarks/network/run):
the prose paragraphs of Node.js's stream documentation (doc/api/stream.md, MIT, notice in
HELDOUT-LICENSE), as Debian's nodejs 20.20.2 package installs it at /usr/share/doc/nodejs/api/.
Code blocks, headings, lists, tables and comments are dropped, and markdown links become their
text, so what is left is running English prose that no part of the translation was tuned on.
heldout.txt is committed; this script documents how it was made.

Usage: python3 Benchmarks/network/heldout.py [SOURCE] > Benchmarks/network/heldout.txt
"""
import re
import sys

source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/nodejs/api/stream.md"
text = open(source, encoding="utf-8").read()
text = re.sub(r"```.*?```", "", text, flags=re.S)
text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
paragraphs = []
for block in re.split(r"\n\s*\n", text):
    block = block.strip()
    if not block or block.startswith(("#", "*", "-", "|", ">", "[", "<", "    ")) or block.count("`") > 6:
        continue
    line = " ".join(part.strip() for part in block.splitlines())
    line = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", line)   # [text][reference]
    line = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", line)    # [text](url)
    line = re.sub(r"\[([^\]]+)\]", r"\1", line)
    line = line.replace("`", "")
    if len(line) >= 80:
        paragraphs.append(line)
sys.stdout.write("\n\n".join(paragraphs) + "\n")
