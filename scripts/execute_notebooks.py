"""Execute the notebooks in notebooks/ top to bottom and store them with their outputs, so that a reader
browsing the repository sees every figure without running anything.

    python scripts/execute_notebooks.py [NAME ...] [--check] [--data DIR] [--timeout S] [--times FILE]

NAME is a notebook's file name with or without ``.ipynb`` (default: all of notebooks/*.ipynb). The kernel is
``python3`` started in notebooks/, with this process's environment, so it imports the fastvae this Python
imports (installed, or the source tree with ``PYTHONPATH=python``); MNIST is read from ``--data`` (default
``$FASTVAE_DATA``; if neither is given, fastvae's own default folder, ``~/.cache/fastvae/mnist``).

A notebook is written back (atomically) only if every cell ran without error, it holds at least one
``image/png`` output and no output names the machine's folders (the repository, the data folder, the home
folder). Cell timing metadata is not recorded and the notebook-level metadata is kept as it was, so
re-running gives a diff only where outputs changed. ``--check`` executes and checks without writing.
``--times FILE`` writes the wall time of each notebook as JSON (read by scripts/reproductions_doc.py).
Exit status 1 if any notebook failed.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def problems(nb, forbidden=()):
    """What keeps an executed notebook from being stored: error outputs, no figure, machine paths."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    found = [f"cell error {o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"]
    if not any("image/png" in o.get("data", {}) for o in outputs):
        found.append("no image/png output")
    text = json.dumps(outputs)
    found += [f"an output contains the machine path {p}" for p in forbidden if p and p in text]
    return found


def execute(path, timeout, forbidden):
    """Run one notebook in place (in memory); return (notebook, seconds, problems)."""
    nb = nbformat.read(path, as_version=4)
    metadata = json.loads(json.dumps(nb.metadata))  # the kernel rewrites language_info; keep the stored one
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
        found = []
    except nbclient.exceptions.CellExecutionError as e:
        found = [str(e).strip().splitlines()[-1]]
    seconds = time.perf_counter() - t0
    nb.metadata = nbformat.from_dict(metadata)
    return nb, seconds, found or problems(nb, forbidden)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    ap.add_argument("--check", action="store_true", help="execute and check, do not write")
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"), help="MNIST folder (default $FASTVAE_DATA)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    ap.add_argument("--times", type=Path, help="write {notebook: seconds} as JSON to this file")
    args = ap.parse_args(argv)

    available = {p.stem: p for p in sorted(NOTEBOOKS.glob("*.ipynb"))}
    names = [n[:-len(".ipynb")] if n.endswith(".ipynb") else n for n in args.names] or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        ap.error(f"no notebook {', '.join(unknown)} in notebooks/ (have: {', '.join(available)})")
    if args.data:
        os.environ["FASTVAE_DATA"] = os.path.abspath(args.data)  # the kernel inherits this environment
    forbidden = {str(REPO), os.environ.get("FASTVAE_DATA"), os.path.expanduser("~"), sys.prefix}
    forbidden -= {None, "", "/", "/usr", "/usr/local"}  # a system prefix is no machine-specific folder

    from fastvae._atomic import atomic_write  # after the argument checks: importing fastvae loads the extension

    times, failed = {}, []
    for name in names:
        path = available[name]
        nb, seconds, found = execute(path, args.timeout, forbidden)
        times[path.name] = round(seconds)
        if found:
            failed.append(name)
            print(f"{path.name}: FAILED after {seconds:.0f} s: " + "; ".join(found), flush=True)
            continue
        n_png = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        if not args.check:
            atomic_write(path, lambda f: f.write((nbformat.writes(nb) + "\n").encode("utf-8")))
        print(f"{path.name}: {seconds:.0f} s, {n_png} figure(s), {'checked' if args.check else 'stored'}",
              flush=True)
    if args.times:
        record = {"command": "python scripts/execute_notebooks.py " + " ".join(args.names),
                  "total_seconds": sum(times.values()), "notebooks": times}
        atomic_write(args.times, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode("utf-8")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
