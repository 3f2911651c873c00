"""hf_cakd.data on real CIFAR-10 rows: loading, column detection, errors, per-model transforms, batches."""

from __future__ import annotations

import os

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from tiny_models import hf_vit, timm_vit
from transformers import BitImageProcessor, ConvNextImageProcessor, TimmWrapperImageProcessor, ViTImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_cakd.data import (
    IMAGES_KEY,
    ColumnNotFoundError,
    DeviceViews,
    DistillationCollator,
    DistillationTransform,
    EmptySplitError,
    LabelColumnError,
    MissingImageError,
    SplitNotFoundError,
    UndecodableImageError,
    image_transforms,
    load_image_dataset,
    model_input_spec,
)
from hf_cakd.data.device_views import SharedTrainTransform

DEMO_TRAIN = os.path.join(os.path.dirname(__file__), "..", "demo_data", "cifar10", "train.parquet")
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Student as ViT (mean/std 0.5, 32 px, warp); teacher as an ImageNet CNN (shorter side 56, crop 48).
VIT_PROCESSOR = ViTImageProcessor(size=32, image_mean=[0.5] * 3, image_std=[0.5] * 3)
IMAGENET_PROCESSOR = BitImageProcessor(
    size={"shortest_edge": 56}, crop_size=48, image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD
)


@pytest.fixture(scope="module")
def cifar_rows():
    """The first 50 demo rows as an arrow table (40 for train, 10 for test)."""
    return pq.read_table(DEMO_TRAIN).slice(0, 50)


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory, cifar_rows):
    root = tmp_path_factory.mktemp("parquet")
    pq.write_table(cifar_rows.slice(0, 40), root / "train.parquet")
    pq.write_table(cifar_rows.slice(40, 10), root / "test.parquet")
    return root


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def in_memory(columns: dict, features: Features | None = None, test_rows: int = 2) -> DatasetDict:
    """A DatasetDict whose last ``test_rows`` rows form the test split."""
    full = Dataset.from_dict(columns, features=features)
    n = len(full)
    return DatasetDict(train=full.select(range(n - test_rows)), test=full.select(list(range(n - test_rows, n))))


# Loading and column detection


def test_parquet_directory_splits_columns_and_class_names(parquet_dir, cache_dir):
    data = load_image_dataset(str(parquet_dir), cache_dir=cache_dir)
    assert (len(data.train), len(data.eval)) == (40, 10)
    assert (data.image_column, data.label_column) == ("img", "label")
    assert data.id2label == dict(enumerate(CIFAR_NAMES))
    assert data.label2id["truck"] == 9 and data.num_labels == 10


def test_single_parquet_file_is_a_train_split_without_eval(parquet_dir, cache_dir):
    data = load_image_dataset(str(parquet_dir / "train.parquet"), cache_dir=cache_dir)
    assert len(data.train) == 40 and data.eval is None


def test_save_to_disk_directory(parquet_dir, cache_dir, tmp_path):
    loaded = load_image_dataset(str(parquet_dir), cache_dir=cache_dir)
    DatasetDict(train=loaded.train, test=loaded.eval).save_to_disk(tmp_path / "saved")
    data = load_image_dataset(str(tmp_path / "saved"), cache_dir=cache_dir)
    assert (len(data.train), len(data.eval)) == (40, 10)
    assert data.id2label[0] == "airplane"


def test_imagefolder_with_split_and_class_subfolders(tmp_path, cache_dir):
    for split, count in (("train", 3), ("test", 1)):
        for name, colour in (("cat", "red"), ("dog", "blue")):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                PIL.Image.new("RGB", (20, 24), colour).save(folder / f"{i}.png")
    data = load_image_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    assert (len(data.train), len(data.eval)) == (6, 2)
    assert (data.image_column, data.label_column) == ("image", "label")
    assert data.id2label == {0: "cat", 1: "dog"}


def test_parquet_files_beside_more_image_files_are_named_not_taken_for_an_unlabelled_image_folder(tmp_path, cache_dir):
    """datasets reads a folder as an image folder where its image files outnumber its parquet files (a parquet of
    paths beside images under train/): the message names the ignored parquet files, not class subfolders."""
    import pyarrow as pa

    (tmp_path / "data" / "images" / "train").mkdir(parents=True)
    for i in range(3):
        PIL.Image.new("RGB", (8, 8), "red").save(tmp_path / "data" / "images" / "train" / f"{i}.png")
    pq.write_table(pa.table({"image": [f"images/train/{i}.png" for i in range(3)], "label": [0, 1, 0]}),
                   tmp_path / "data" / "train.parquet")  # fmt: skip
    with pytest.raises(ColumnNotFoundError, match=r"image folder, as its image files outnumber its data files "
                       r"\(train.parquet\), which it ignored"):  # fmt: skip
        load_image_dataset(str(tmp_path / "data"), cache_dir=cache_dir)


def test_explicit_columns_and_eval_split():
    splits = in_memory(
        {"photo": [b"x"] * 4, "target": [0, 1, 2, 1], "label": ["a", "b", "c", "b"]},
        Features(photo=Value("binary"), target=Value("int64"), label=Value("string")),
    )
    splits["holdout"] = splits.pop("test")
    data = load_image_dataset(splits, image_column="photo", label_column="target", eval_split="holdout")
    assert (data.image_column, data.label_column) == ("photo", "target")
    assert data.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}  # integers without names
    assert len(data.eval) == 2


def test_validation_split_is_the_default_eval_split():
    splits = in_memory({"image": [b"x"] * 3, "label": [0, 1, 0]})
    splits["validation"] = splits.pop("test")
    assert len(load_image_dataset(splits).eval) == 2


# Errors that name the problem and the fix


def test_missing_split_lists_the_available_ones():
    splits = in_memory({"image": [b"x"] * 3, "label": [0, 1, 0]})
    with pytest.raises(SplitNotFoundError, match=r"no 'validation' split.*train, test.*eval_split="):
        load_image_dataset(splits, eval_split="validation")
    with pytest.raises(SplitNotFoundError, match=r"no 'training' split.*train_split="):
        load_image_dataset(splits, train_split="training")


def test_missing_column_lists_the_columns(parquet_dir, cache_dir):
    with pytest.raises(ColumnNotFoundError, match=r"no column 'picture'.*img \(Image\), label \(ClassLabel\)"):
        load_image_dataset(str(parquet_dir), image_column="picture", cache_dir=cache_dir)


def test_undetectable_image_column_asks_for_it():
    splits = in_memory({"photo": [b"x"] * 3, "label": [0, 1, 0]})
    with pytest.raises(ColumnNotFoundError, match=r"which column holds the images.*photo \(binary\).*image_column="):
        load_image_dataset(splits)


def test_empty_split():
    splits = in_memory({"image": [b"x"] * 3, "label": [0, 1, 0]}, test_rows=0)
    with pytest.raises(EmptySplitError, match=r"'test' split is empty.*train \(3 rows\), test \(0 rows\)"):
        load_image_dataset(splits)


def test_class_names_are_encoded_with_one_mapping_for_all_splits(caplog):
    # "bird" only appears in the test split: the train split alone would number cat 0, dog 1.
    splits = in_memory({"image": [b"x"] * 6, "label": ["dog", "cat", "dog", "cat", "bird", "cat"]})
    with caplog.at_level("INFO", logger="hf_cakd.data.loading"):
        data = load_image_dataset(splits)
    assert data.id2label == {0: "bird", 1: "cat", 2: "dog"}
    assert data.train["label"] == [2, 1, 2, 1] and data.eval["label"] == [0, 1]
    assert data.train.features["label"] == data.eval.features["label"] == ClassLabel(names=["bird", "cat", "dog"])
    assert "Encoded the label column 'label' as 3 classes: {0: 'bird', 1: 'cat', 2: 'dog'}" in caplog.text


def test_boolean_labels_are_class_names_too():
    data = load_image_dataset(in_memory({"image": [b"x"] * 4, "label": [True, False, True, True]}, test_rows=1))
    assert data.id2label == {0: "False", 1: "True"} and data.train["label"] == [1, 0, 1]


def test_float_labels_are_refused_with_the_cast_fix():
    splits = in_memory({"image": [b"x"] * 3, "label": [0.0, 1.0, 0.0]})
    message = r"'label' holds float64 values, not class ids.*cast_column\('label', datasets.Value\('int64'\)\)"
    with pytest.raises(LabelColumnError, match=message):
        load_image_dataset(splits)


def test_unlabelled_test_split_is_refused():
    features = Features(image=Image(), label=ClassLabel(names=["cat", "dog"]))
    splits = in_memory({"image": [None] * 4, "label": [0, 1, -1, -1]}, features)
    with pytest.raises(LabelColumnError, match=r"'test' split has labels from -1 to -1.*eval_split="):
        load_image_dataset(splits)


# Per-model transforms


def test_shapes_and_dtype_for_two_processors():
    image = PIL.Image.new("RGB", (40, 30), "gray")
    for train in (False, True):
        for processor, size in ((VIT_PROCESSOR, 32), (IMAGENET_PROCESSOR, 48)):
            pixels = image_transforms(None, processor, train=train)(image)
            assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32
            assert type(pixels) is torch.Tensor


def test_a_white_image_normalises_to_one_minus_mean_over_std():
    white = PIL.Image.new("RGB", (64, 64), "white")
    cases = ((VIT_PROCESSOR, [0.5] * 3, [0.5] * 3), (IMAGENET_PROCESSOR, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    for processor, mean, std in cases:
        pixels = image_transforms(None, processor, train=False)(white)
        expected = (1 - torch.tensor(mean)) / torch.tensor(std)
        torch.testing.assert_close(pixels.mean(dim=(1, 2)), expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA"])
def test_any_image_mode_becomes_three_channels(mode):
    image = PIL.Image.new("RGB", (32, 32), (200, 100, 50)).convert(mode)
    for train in (False, True):
        assert image_transforms(None, VIT_PROCESSOR, train=train)(image).shape == (3, 32, 32)


def test_transparent_pixels_become_white():
    transparent = PIL.Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    pixels = image_transforms(None, VIT_PROCESSOR, train=False)(transparent)
    torch.testing.assert_close(pixels, torch.ones(3, 32, 32))


def test_input_spec_of_each_processor_style():
    convnext = model_input_spec(processor=ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875))
    assert (convnext.size, convnext.resize) == ((224, 224), 256)
    vit = model_input_spec(processor=VIT_PROCESSOR)
    assert (vit.size, vit.resize, vit.mean) == ((32, 32), (32, 32), (0.5, 0.5, 0.5))
    bit = model_input_spec(processor=IMAGENET_PROCESSOR, image_size=24)  # override keeps the crop share
    assert (bit.size, bit.resize, bit.interpolation.value) == ((24, 24), 28, "bicubic")


def test_input_spec_from_timm_and_fallback():
    timm_spec = model_input_spec(timm_vit())  # built at 32 px although its pretrained_cfg says 224
    assert timm_spec.size == (32, 32) and timm_spec.mean == (0.5, 0.5, 0.5)
    timm_config = {"input_size": (3, 64, 64), "crop_pct": 1.0, "mean": (0.1,) * 3}
    processor = TimmWrapperImageProcessor(pretrained_cfg=timm_config)
    assert model_input_spec(processor=processor).size == (64, 64)
    fallback = model_input_spec(hf_vit())  # no processor: config.image_size and ImageNet statistics
    assert fallback.size == (32, 32) and fallback.mean == tuple(IMAGENET_DEFAULT_MEAN)


# Tiny images (CIFAR) at a crop_pct recipe: shortest edge 32, crop_pct 0.875 (resize 36, crop 32), as timm's.
CROP_PCT_PROCESSOR = ConvNextImageProcessor(
    size={"shortest_edge": 32}, crop_pct=0.875, image_mean=[0.5] * 3, image_std=[0.5] * 3
)


def random_image(side: int, seed: int = 0) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def plain_tensor(image: PIL.Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1  # mean/std 0.5


def test_a_tiny_image_at_the_model_size_is_neither_resized_nor_cropped():
    """The ImageNet crop_pct recipe would resize 32 px to 36 and crop 32: a blurred, cropped view."""
    assert model_input_spec(processor=CROP_PCT_PROCESSOR).resize == 36  # the recipe photos still get
    image = random_image(32)
    pixels = image_transforms(None, CROP_PCT_PROCESSOR, train=False)(image)
    torch.testing.assert_close(pixels, plain_tensor(image))
    # Training: reflect-pad 4, crop 32, maybe flip; the centre 24 x 24 is an exact shifted copy.
    padded = torch.nn.functional.pad(plain_tensor(image)[None], (4, 4, 4, 4), mode="reflect")[0]
    train = image_transforms(None, CROP_PCT_PROCESSOR, train=True)
    for _ in range(5):
        view = train(image)
        shifts = [padded[:, y : y + 32, x : x + 32] for y in range(9) for x in range(9)]
        assert any(torch.allclose(view, s, atol=1e-5) or torch.allclose(view, s.flip(-1), atol=1e-5) for s in shifts)


def test_a_tiny_image_is_stretched_to_a_larger_model_without_cropping():
    coarse = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(coarse).resize((32, 32), PIL.Image.Resampling.BILINEAR)  # smooth: survives 2x
    larger = ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pixels = image_transforms(None, larger, train=False)(image)
    assert pixels.shape == (3, 64, 64)
    shrunk = torch.nn.functional.avg_pool2d(pixels[None], 2)[0]
    assert (shrunk - plain_tensor(image)).abs().mean() < 0.02  # resize 73 and crop 64: 0.17


# Rows to batches


def distillation_transform(data, **kwargs):
    return DistillationTransform(
        image_transforms(None, VIT_PROCESSOR, train=True),
        image_transforms(None, IMAGENET_PROCESSOR, train=True),
        image_column=data.image_column,
        label_column=data.label_column,
        **kwargs,
    )


def test_collator_stacks_both_views_and_int64_labels(parquet_dir, cache_dir):
    data = load_image_dataset(str(parquet_dir), cache_dir=cache_dir)
    train = distillation_transform(data).apply_to(data.train)
    batch = DistillationCollator()([train[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["teacher_pixel_values"].shape == (4, 3, 48, 48)
    assert batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == data.train["label"][:4]
    assert data.train.features["img"].decode  # the caller's dataset is untouched


def test_without_teacher_there_are_no_teacher_pixels(parquet_dir, cache_dir):
    data = load_image_dataset(str(parquet_dir), cache_dir=cache_dir)
    student = image_transforms(None, VIT_PROCESSOR, train=False)
    transform = DistillationTransform(student, image_column="img", label_column="label")
    batch = DistillationCollator()([transform.apply_to(data.eval)[i] for i in range(2)])
    assert set(batch) == {"pixel_values", "labels", "skipped_images"} and batch["skipped_images"].tolist() == [0, 0]


def test_teacher_and_student_see_the_same_random_view():
    """Same crop and flip for both: the teacher's view, shrunk to the student's size, matches it."""
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    channels = [np.tile(ramp, (96, 1)), np.tile(ramp[:, None], (1, 96)), np.full((96, 96), 128, np.uint8)]
    gradient = PIL.Image.fromarray(np.stack(channels, axis=-1))
    same = ViTImageProcessor(size=32, image_mean=[0.0] * 3, image_std=[1.0] * 3)
    larger = ViTImageProcessor(size=64, image_mean=[0.0] * 3, image_std=[1.0] * 3)
    for image in (gradient, gradient.resize((32, 32))):  # photo and small-image augmentation
        transform = DistillationTransform(
            image_transforms(None, same, train=True), image_transforms(None, larger, train=True),
            image_column="image", label_column="label",
        )
        for _ in range(10):
            views = transform._views(image)
            student, teacher = views["pixel_values"], views["teacher_pixel_values"]
            shrunk = torch.nn.functional.avg_pool2d(teacher[None], 2)[0]
            assert (shrunk - student).abs().mean() < 0.01  # independent views differ by ~0.13


def test_views_on_device_rows_carry_one_uint8_image(cifar_rows):
    views = DeviceViews(model_input_spec(processor=VIT_PROCESSOR), model_input_spec(processor=IMAGENET_PROCESSOR))
    data = load_image_dataset(bad_image_dataset(cifar_rows))
    columns = {"image_column": "img", "label_column": "label"}
    transform = DistillationTransform(device_views=views, skip_bad_images=True, **columns)
    batch = DistillationCollator()([transform.apply_to(data.train)[i] for i in range(6)])
    assert set(batch) == {IMAGES_KEY, "labels", "skipped_images"}
    assert batch["skipped_images"].tolist() == [1, 0, 0, 0, 0]
    assert batch[IMAGES_KEY].dtype == torch.uint8 and batch[IMAGES_KEY].shape == (5, 3, 32, 32)  # CIFAR's own size
    views(batch)
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["teacher_pixel_values"].shape == (5, 3, 48, 48)
    with pytest.raises(ValueError, match="or device_views alone"):
        DistillationTransform(image_transforms(None, VIT_PROCESSOR, train=True), device_views=views, **columns)


def test_tiny_images_of_different_sizes_are_stretched_to_the_largest_in_their_batch():
    shared = SharedTrainTransform((64, 64), model_input_spec(processor=VIT_PROCESSOR).interpolation)
    images = [shared(random_image(32)), shared(PIL.Image.new("RGB", (24, 24), (200, 100, 50)))]
    batch = DistillationCollator()([{IMAGES_KEY: image, "labels": 0} for image in images])
    assert batch[IMAGES_KEY].shape == (2, 3, 32, 32) and batch[IMAGES_KEY].dtype == torch.uint8
    assert torch.equal(batch[IMAGES_KEY][0], images[0])
    assert batch[IMAGES_KEY][1].flatten(1).unique(dim=1).tolist() == [[200], [100], [50]]


def bad_image_dataset(cifar_rows, missing_rows=(), split=None) -> Dataset:
    """Six rows; row 2's bytes are not an image, ``missing_rows`` have an empty image cell."""
    rows = cifar_rows.slice(0, 6).to_pylist()
    rows[2]["img"] = {"bytes": b"not an image", "path": None}
    for row in missing_rows:
        rows[row]["img"] = None
    features = Features(img=Image(), label=ClassLabel(names=CIFAR_NAMES))
    return Dataset.from_list(rows, features=features, split=split)


def test_undecodable_image_names_the_row_and_the_fix(cifar_rows):
    data = load_image_dataset(bad_image_dataset(cifar_rows))
    train = distillation_transform(data).apply_to(data.train)
    assert train[1]["pixel_values"] is not None
    message = r"Row 2: the image in column 'img' cannot be decoded.*skip_bad_images=True"
    with pytest.raises(UndecodableImageError, match=message):
        train[2]


def test_skipped_image_is_dropped_and_counted(cifar_rows, caplog):
    data = load_image_dataset(bad_image_dataset(cifar_rows))
    transform = distillation_transform(data, skip_bad_images=True)
    train = transform.apply_to(data.train)
    for _ in range(2):  # a second epoch neither recounts nor relogs the row
        batch = DistillationCollator()([train[i] for i in range(6)])
    assert batch["pixel_values"].shape[0] == batch["teacher_pixel_values"].shape[0] == 5
    assert batch["skipped_images"].tolist() == [1, 0, 0, 0, 0]  # one entry per kept image, as the batch splits
    assert batch["labels"].tolist() == [label for i, label in enumerate(data.train["label"]) if i != 2]
    assert transform.skipped_rows == {2} and transform.num_skipped == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_cakd.data.distillation"]
    assert len(warnings) == 1 and warnings[0].startswith("Skipping row 2: undecodable image")


def test_missing_image_names_the_row_and_the_split(cifar_rows):
    transform = distillation_transform(load_image_dataset(bad_image_dataset(cifar_rows)))
    data = bad_image_dataset(cifar_rows, missing_rows=[4], split="train")
    message = r"^Row 4 of split 'train': the image in column 'img' is missing \(the cell is empty\).*skip_bad_images"
    with pytest.raises(MissingImageError, match=message):
        transform.apply_to(data)[4]
    with pytest.raises(MissingImageError, match=r"^Row 4 of split 'holdout': "):
        transform.apply_to(data, split="holdout")[4]


def test_missing_and_undecodable_images_are_skipped_and_counted_across_workers(cifar_rows, caplog):
    data = load_image_dataset(bad_image_dataset(cifar_rows, missing_rows=[0, 5]))
    transform = distillation_transform(data, skip_bad_images=True)
    train = transform.apply_to(data.train)
    batches = list(DataLoader(train, batch_size=2, num_workers=2, collate_fn=DistillationCollator()))
    assert [batch["skipped_images"].sum().item() for batch in batches] == [1, 1, 1]  # rows 0, 2 and 5
    assert sum(len(batch["labels"]) for batch in batches) == 3
    assert transform.num_skipped == 0  # the workers counted in their own copies

    assert train[0]["pixel_values"] is None  # read in this process: counted and logged here
    assert transform.skipped_rows == {0}
    assert "Skipping row 0: missing image; 1 skipped so far." in caplog.text
