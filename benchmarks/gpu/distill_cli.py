"""``scripts/distill.py`` (``hf-cakd distill``) that also writes its process's peak memory, for ``benchmarks.gpu``.

    python -m benchmarks.gpu.distill_cli PEAK_JSON [hf-cakd distill flags]

The run is the CLI's own (``run_cli(distill_main)``, exit codes and all); on the way out, ``PEAK_JSON`` gets
``{"device": ..., "peak_memory_mb": ...}``: ``torch.cuda.max_memory_allocated`` on CUDA, else the peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from benchmarks.common import default_device, peak_memory_mb
from hf_cakd.cli import distill_main
from hf_cakd.errors import run_cli


def distill_recording_peak(peak_file: Path, argv: list[str]) -> int:
    """``hf-cakd distill argv``'s exit code (a bug's exception propagates); the peak memory into ``peak_file``."""
    device = torch.device("cpu" if "--use_cpu" in argv else default_device())
    try:
        run_cli(distill_main, argv)
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        peak_file.write_text(json.dumps({"device": str(device), "peak_memory_mb": peak_memory_mb(device)}))


if __name__ == "__main__":
    sys.exit(distill_recording_peak(Path(sys.argv[1]), sys.argv[2:]))
