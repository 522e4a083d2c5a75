"""Each benchmark script writes its own table into docs/benchmarks.md (``--write-docs``), between the
marker comments ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``, so that no measured number there is typed
by hand. The block records the command line, the date, the torch version, the thread count and the CPU."""
import datetime
import os
import shlex
import sys
from pathlib import Path

import torch

from fastvae._machine import cpu_name

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def command_line(script, argv, drop_values=("--data",)):
    """The command as a reader would type it: options that name this machine's folders are left out."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in drop_values:
            skip = True
        elif a == "--write-docs" or any(a.startswith(d + "=") for d in drop_values):
            continue
        else:
            out.append(a)
    return " ".join(["python", f"bench/{Path(script).name}", *map(shlex.quote, out)])


def write_block(name, lines, threads, script=None):
    """Replace the block ``name`` in docs/benchmarks.md with a provenance line and ``lines`` (Markdown);
    ``script``: the writing script's name when it is not ``name`` (one script, several blocks)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text(encoding="utf-8")
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"{DOC}: needs exactly one '{start}' ... '{end}' pair to write the table into")
    provenance = (f"Written by `{command_line(sys.argv[0], sys.argv[1:])}` on "
                  f"{datetime.date.today().isoformat()}: torch {torch.__version__}, {threads} thread(s) for every "
                  f"side, {cpu_name()}, {os.cpu_count()} logical CPUs.")
    block = "\n".join([start, f"<!-- written by bench/{script or name}.py --write-docs: do not edit by hand -->",
                       provenance, "", *lines, end])
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = head + block + tail
    tmp = DOC.with_name(f".{DOC.name}.part")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, DOC)  # atomic: the doc is never left half-written
    print(f"wrote the {name} table into {DOC.relative_to(DOC.parents[1])}")
