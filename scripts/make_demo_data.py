"""Regenerate demo_data/cifar10: a small, class-balanced CIFAR-10 subset shipped with the repository.

The demo and the tests must run offline and without any data outside the repository, so a few
thousand real images live in ``demo_data/``. This script is the only place that reads the full
source copy; run it again to rebuild the subset::

    python scripts/make_demo_data.py [SOURCE_DIR] [--out demo_data/cifar10]

SOURCE_DIR holds ``train.parquet`` and ``test.parquet`` with an ``img`` (``datasets.Image``) and a
``label`` (``datasets.ClassLabel``) column, as the Hub dataset ``uoft-cs/cifar10`` does.
Selection is deterministic: the first N rows of each class in file order, kept in file order.
Rows are copied as they are (the JPEG bytes and the ``huggingface`` schema metadata that carries
the features), so ``load_dataset("parquet")`` still sees ``ClassLabel`` names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
PER_CLASS = {"train": 500, "test": 100}


def first_rows_per_class(table: pa.Table, per_class: int, label_column: str = "label") -> pa.Table:
    """The first ``per_class`` rows of every class, in the table's own order."""
    taken: dict[int, int] = {}
    keep = []
    for row, label in enumerate(table.column(label_column).to_pylist()):
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            keep.append(row)
    short = {label: count for label, count in taken.items() if count < per_class}
    if short:
        raise ValueError(f"Classes with fewer than {per_class} rows in the source: {short}")
    return table.take(keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", default="../shared/datasets/cifar10", type=Path,
                        help="directory holding the full train.parquet and test.parquet")
    parser.add_argument("--out", default=REPO / "demo_data" / "cifar10", type=Path)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS.items():
        table = pq.read_table(args.source / f"{split}.parquet")
        subset = first_rows_per_class(table, per_class)
        pq.write_table(subset, args.out / f"{split}.parquet")
        print(f"{split}: {subset.num_rows} rows -> {args.out / f'{split}.parquet'}")


if __name__ == "__main__":
    main()
