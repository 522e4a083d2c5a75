"""The machine a measurement ran on, named as a reader can compare it (the CPU's model name, not "x86_64")."""
import os
import platform

import torch


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """{"processor": CPU name, "platform": OS and kernel, "logical_cpus": int, "torch_threads": int}."""
    return {"processor": cpu_name(), "platform": platform.platform(), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
