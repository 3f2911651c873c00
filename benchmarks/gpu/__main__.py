"""``python -m benchmarks.gpu``: see benchmarks/gpu/run.py; on a lent GPU machine, benchmarks/README.md ("GPU check")."""

import importlib.util
import os
import signal
import sys

# What the run imports beyond the standard library: a GPU machine's own Python may lack some of them.
REQUIRED = ("torch", "torchvision", "transformers", "accelerate", "timm", "datasets", "PIL", "numpy", "pyarrow")

if __name__ == "__main__":  # not when a spawned process imports this module as its __mp_main__: it needs none of it
    if missing := [name for name in REQUIRED if importlib.util.find_spec(name) is None]:
        raise SystemExit(
            f"error: python -m benchmarks.gpu needs {', '.join(missing)}: install the project's requirements, or on a "
            "GPU machine the wheels python -m benchmarks.gpu.prepare fetched (benchmarks/README.md, 'GPU check')."
        )
    # No network on a GPU machine: every Hub and datasets lookup fails at once instead of waiting for a timeout.
    # Set before the libraries are imported, as they read them then; the processes this one starts inherit them.
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    # Stopped from outside (`timeout`), exit through the finally blocks, which stop the CLI run's own process group.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from .run import main

    main()
