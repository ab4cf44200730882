"""Benchmark metadata: library versions and the device, saved with every pytest-benchmark JSON."""

from __future__ import annotations

import os
import platform

import pytest


def pytest_benchmark_update_machine_info(config, machine_info):
    import numpy
    import torch

    machine_info["torch"] = torch.__version__
    machine_info["numpy"] = numpy.__version__
    machine_info["python"] = platform.python_version()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def pytest_collect_file(file_path, parent):
    # `make bench` runs `pytest benchmarks/`, whose default pattern (test_*.py) misses bench_*.py;
    # files named on the command line are already collected by pytest itself.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
