"""What ``python -m benchmarks.gpu`` needs beside the working tree, in one ignored folder to carry to the GPU machine.

    python -m benchmarks.gpu.prepare                  # benchmarks/gpu/data/: CIFAR-10 rows and wheels
    python -m benchmarks.gpu.prepare --no_wheels      # the data alone

``data/cifar10/{train,test}.parquet``: the first ``--train_rows`` and ``--test_rows`` rows of ``--source``
(a CIFAR-10 parquet folder whose rows are already shuffled, ``img`` and ``label`` columns; its schema, and so
its class names, kept), at most 30 MB together. ``data/wheels/``: the packages of ``CARRIED`` at the versions
installed here (the ones the tests passed with), for the GPU machine's Python, fetched with ``pip download``;
a GPU image that has torch, transformers and accelerate lacks ``datasets`` (benchmarks/README.md, "GPU check").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.common import REPO, shown_path

DATA_DIR = REPO / "benchmarks" / "gpu" / "data"
DATASET_NAME = "cifar10"
WHEELS_NAME = "wheels"
MAX_DATA_MB = 30
# Pure-Python packages, so one wheel serves any platform: datasets and its two needs a GPU image lacks, and
# timm and accelerate at the versions tested here (the image has transformers and torch of its own).
CARRIED = ("datasets", "dill", "multiprocess", "timm", "accelerate")


def write_subset(source: Path, destination: Path, rows: dict[str, int]) -> dict[str, int]:
    """The first ``rows[split]`` rows of ``source/<split>.parquet`` into ``destination``; the bytes written per file."""
    destination.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, count in rows.items():
        path = source / f"{split}.parquet"
        if not path.is_file():
            raise SystemExit(f"error: {path} does not exist: pass --source, a folder with train.parquet and test.parquet.")
        table = pq.read_table(path)
        if count > table.num_rows:
            raise SystemExit(f"error: {path} has {table.num_rows} rows, fewer than the {count} asked for.")
        pq.write_table(table.slice(0, count), destination / path.name)  # the schema's metadata (ClassLabel) kept
        sizes[path.name] = (destination / path.name).stat().st_size
    total_mb = sum(sizes.values()) / 1e6
    if total_mb > MAX_DATA_MB:
        raise SystemExit(f"error: the subset is {total_mb:.1f} MB, over {MAX_DATA_MB} MB: ask for fewer rows.")
    return sizes


def download_wheels(destination: Path, python_version: str) -> list[str]:
    """``pip download`` of :data:`CARRIED` at this environment's versions, for ``python_version``."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in CARRIED]
    destination.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", python_version, "--implementation", "py", "-d", str(destination), *pins],
        check=True,
    )  # fmt: skip
    return pins


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, default=REPO.parent / "shared" / "datasets" / "cifar10", help="A CIFAR-10 parquet folder."
    )
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="The folder to write (and carry).")
    parser.add_argument("--train_rows", type=int, default=40_000)
    parser.add_argument("--test_rows", type=int, default=2_000)
    parser.add_argument("--no_wheels", action="store_true", help="Write the data only.")
    parser.add_argument("--python_version", default="3.12", help="The GPU machine's Python, for the wheels.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    sizes = write_subset(options.source, options.data / DATASET_NAME, {"train": options.train_rows, "test": options.test_rows})
    print(f"{options.data / DATASET_NAME}: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sizes.items()))
    if not options.no_wheels:
        pins = download_wheels(options.data / WHEELS_NAME, options.python_version)
        print(f"{options.data / WHEELS_NAME}: {' '.join(pins)}")
    total = sum(path.stat().st_size for path in options.data.rglob("*") if path.is_file())
    print(f"Carry {shown_path(options.data)} ({total / 2**20:.1f} MiB) beside the working tree.")


if __name__ == "__main__":
    main()
