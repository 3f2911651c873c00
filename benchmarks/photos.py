"""Photo-sized JPEGs for timing the input pipeline (``benchmarks.speed --photos``, ``benchmarks.gpu``).

Made from the six real photos of ``demo_data/photos``; this module imports only numpy and Pillow, so the
processes that make a large set in parallel start quickly.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
from pathlib import Path

import numpy as np
import PIL.Image

PHOTOS = Path(__file__).resolve().parents[1] / "demo_data" / "photos"
PHOTO_LONGER_SIDE = 500  # an ImageNet (and Imagenette) JPEG is typically 500 x 375 or 500 x 333


def make_photo_set(root: Path, count: int, seed: int = 0, workers: int = 1) -> Path:
    """``count`` JPEGs at ImageNet's typical size made from the photos of ``demo_data/photos``, an imagefolder
    with one class per photo: a random crop of 25-100 % of a photo's area (aspect 3:4 to 4:3), mirrored
    half the time, resized to a longer side of ``PHOTO_LONGER_SIDE`` and saved at JPEG quality 90.

    The crops are drawn in order from ``seed``, so ``workers`` processes make the same files as one.
    """
    rng = np.random.default_rng(seed)
    sizes = {path.stem: PIL.Image.open(path).size for path in sorted(PHOTOS.glob("*.jpg"))}
    names = list(sizes)
    crops = []
    for index in range(count):
        name = names[index % len(names)]
        image_width, image_height = sizes[name]
        area = image_width * image_height * rng.uniform(0.25, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        width = min(image_width, round(math.sqrt(area * aspect)))
        height = min(image_height, round(math.sqrt(area / aspect)))
        left, top = int(rng.integers(0, image_width - width + 1)), int(rng.integers(0, image_height - height + 1))
        crops.append((name, (left, top, left + width, top + height), bool(rng.random() < 0.5), root / name / f"{index:04d}.jpg"))
    for name in names[:count]:
        (root / name).mkdir(parents=True, exist_ok=True)
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a parent that may hold CUDA or threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(_save_photo, crops, chunksize=max(1, count // (4 * workers))))
    else:
        for crop in crops:
            _save_photo(crop)
    return root


_sources: dict[str, PIL.Image.Image] = {}  # each process decodes a source photo once


def _save_photo(crop: tuple[str, tuple[int, int, int, int], bool, Path]) -> None:
    name, box, mirrored, path = crop
    if name not in _sources:
        _sources[name] = PIL.Image.open(PHOTOS / f"{name}.jpg").convert("RGB")
    photo = _sources[name].crop(box)
    if mirrored:
        photo = photo.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    scale = PHOTO_LONGER_SIDE / max(photo.size)
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), PIL.Image.Resampling.BICUBIC)
    photo.save(path, quality=90)
