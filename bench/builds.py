"""Builds of fastvae measured side by side (bench_update.py, bench_regions.py): ``--build LABEL=PYTHON`` pairs,
each child process run by that interpreter in its own environment."""
import argparse
import json
import os
import subprocess


def parse(specs, this_python):
    """[(label, python, named)] from the --build values; none: this interpreter as "this build" (named False)."""
    if not specs:
        return [("this build", this_python, False)]
    builds = []
    for spec in specs:
        label, sep, python = spec.partition("=")
        if not (sep and label and python):
            raise SystemExit(f"--build takes LABEL=PYTHON, got {spec!r}")
        builds.append((label, python, True))
    return builds


def child_env(named, **extra):
    """The child's environment. A named build's interpreter must import its own fastvae, so this process's
    PYTHONPATH (which may point at another build, such as the in-place one) is not passed on to it."""
    env = dict(os.environ, **extra)
    if named:
        env.pop("PYTHONPATH", None)
    return env


def check_distinct(modules):
    """modules: {label: the folder its child imported fastvae from}. Two labels measuring one build would make a
    comparison that cannot fail."""
    seen = {}
    for label, folder in modules.items():
        if folder in seen:
            raise SystemExit(f"builds {seen[folder]!r} and {label!r} both import fastvae from {folder}")
        seen[folder] = label


def add_arguments(ap, updates):
    """The options every build-comparing bench takes: --build, --updates, --data, --write-docs and the hidden
    --child that a parent passes to each build's process."""
    ap.add_argument("--build", action="append", default=None, help="LABEL=PYTHON (repeatable)")
    ap.add_argument("--updates", type=int, default=updates)
    ap.add_argument("--data", default=os.environ.get("FASTVAE_DATA"))
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)


def run_child(script, python, named, child, updates, data, **env):
    """Runs ``python script --child CHILD --updates N [--data DIR]`` in that build's environment and returns the
    JSON object of its last output line."""
    cmd = [python, os.path.abspath(script), "--child", child, "--updates", str(updates)]
    if data:
        cmd += ["--data", data]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env(named, **env)).stdout
    return json.loads(out.strip().splitlines()[-1])
