"""Builds of fastvae measured side by side (bench_update.py, bench_regions.py): ``--build LABEL=PYTHON`` pairs,
each child process run by that interpreter in its own environment."""
import os


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
