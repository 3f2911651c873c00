"""Dataset shapes and faults found by probing: each fails at load time with one message, or loads right."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from hf_cakd.cli import parse_distill_args
from hf_cakd.data import ColumnNotFoundError, DataError, EmptySplitError, LabelColumnError, load_image_dataset, to_rgb
from hf_cakd.errors import UsageError

IMAGES = [PIL.Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(6)]


def labelled(labels, feature=None) -> Dataset:
    features = Features({"img": Image(), "label": feature or Value("int64")})
    return Dataset.from_dict({"img": IMAGES[: len(labels)], "label": labels}, features=features)


def test_rows_without_a_label_are_refused_naming_the_split_and_the_filter():
    splits = DatasetDict(train=labelled([0, None, 1, 0]), test=labelled([0, 1]))
    with pytest.raises(LabelColumnError, match=r"'train' split has 1 row\(s\) without a label.*filter"):
        load_image_dataset(splits)


def test_a_single_class_is_refused():
    with pytest.raises(LabelColumnError, match="1 class .*at least two"):
        load_image_dataset(labelled(["cat"] * 4, Value("string")))


def test_splits_numbering_their_classes_differently_are_refused():
    splits = DatasetDict(
        train=labelled([0, 1, 2], ClassLabel(names=["a", "b", "c"])),
        test=labelled([0, 1, 2], ClassLabel(names=["c", "b", "a"])),
    )
    with pytest.raises(LabelColumnError, match=r"train: a, b, c; test: c, b, a.*align_labels_with_mapping"):
        load_image_dataset(splits)


def test_classes_missing_from_training_are_warned_of(caplog):
    load_image_dataset(DatasetDict(train=labelled([0, 1, 0, 1]), test=labelled([0, 2])))
    assert "'test' split has classes the 'train' split never shows" in caplog.text


def test_an_image_folder_without_class_subfolders_says_how_to_lay_it_out(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "cat" / "sub").mkdir(parents=True)
        IMAGES[0].save(tmp_path / split / "cat" / "sub" / "0.png")
    with pytest.raises(ColumnNotFoundError, match="no labels, only images.*subfolders"):
        load_image_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_an_empty_split_file_names_the_split(tmp_path):
    labelled([0, 1, 0, 1]).to_parquet(tmp_path / "train.parquet")
    labelled([0, 1]).select([]).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(EmptySplitError, match="'test' split of .* has no rows"):
        load_image_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_a_saved_dataset_loads_and_a_missing_or_empty_folder_is_named(tmp_path):
    labelled([0, 1, 0, 1], ClassLabel(names=["a", "b"])).save_to_disk(tmp_path / "saved")
    assert load_image_dataset(str(tmp_path / "saved")).id2label == {0: "a", 1: "b"}
    with pytest.raises(DataError, match="no such file or folder"):
        load_image_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        load_image_dataset(str(tmp_path / "empty"))


@pytest.mark.parametrize("mode, values", [("I;16", np.uint16), ("I", np.int32), ("F", np.float32)])
def test_high_bit_depth_images_keep_their_contrast(mode, values):
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    top = 1 if mode == "F" else 65535
    rgb = np.asarray(to_rgb(PIL.Image.fromarray((ramp * top).astype(values))))
    assert rgb.min() == 0 and rgb.max() == 255 and abs(rgb.mean() - 127.5) < 2


def test_config_file_values_are_typed_like_flags_and_bad_files_are_usage_errors(tmp_path):
    base = {"teacher": "t", "dataset": "d", "output_dir": str(tmp_path / "out")}
    (tmp_path / "run.json").write_text(json.dumps({**base, "skip_bad_images": "false", "max_steps": "5"}))
    _, data_args, training_args = parse_distill_args([str(tmp_path / "run.json")])
    assert data_args.skip_bad_images is False and training_args.max_steps == 5
    (tmp_path / "bad.yaml").write_text("teacher: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_distill_args([str(tmp_path / "bad.yaml")])
    (tmp_path / "typo.json").write_text(json.dumps({**base, "num_train_epochs": "ten"}))
    with pytest.raises(UsageError, match="num_train_epochs: 'ten'"):
        parse_distill_args([str(tmp_path / "typo.json")])
    (tmp_path / "misspelt.yaml").write_text("teacher: t\ndataset: d\nlearning_rat: 0.1\n")
    with pytest.raises(UsageError, match=r"misspelt.yaml: unknown keys learning_rat: `hf-cakd distill --help`"):
        parse_distill_args([str(tmp_path / "misspelt.yaml")])


@pytest.mark.parametrize("flags", [["--max_train_samples", "0"], ["--max_eval_samples", "-1"]])
def test_sample_limits_that_leave_no_rows_are_usage_errors(tmp_path, flags):
    with pytest.raises(UsageError, match="leaves no rows"):
        parse_distill_args(["--teacher", "t", "--dataset", "d", "--output_dir", str(tmp_path), *flags])


def test_a_missing_label_mapping_file_is_named(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        parse_distill_args(["--teacher", "t", "--dataset", "d", "--output_dir", str(tmp_path),
                            "--teacher_label_mapping", str(tmp_path / "map.json")])  # fmt: skip


@pytest.mark.parametrize(
    "flags, message",
    [(["--num_train_epochs", "0"], "trains no step"), (["--per_device_train_batch_size", "0"], "positive batch size")],
)
def test_schedules_that_train_nothing_stop_before_anything_loads(tmp_path, flags, message):
    from hf_cakd.run.plan import plan_run

    args = parse_distill_args(["--teacher", "t", "--dataset", "d", "--output_dir", str(tmp_path / "out"), *flags])
    with pytest.raises(UsageError, match=message):
        plan_run(*args)


def test_resuming_a_checkpoint_of_other_classes_is_refused_naming_both(tmp_path):
    from hf_cakd.training.checkpointing import check_same_classes
    from hf_cakd.errors import InputError

    (tmp_path / "config.json").write_text(json.dumps({"id2label": {str(i): f"c{i}" for i in range(10)}}))
    check_same_classes(str(tmp_path), {i: f"c{i}" for i in range(10)})
    with pytest.raises(InputError, match=r"10 classes \(c0, c1, c2, c3, c4, \.\.\.\).*has 3 \(a, b, c\)"):
        check_same_classes(str(tmp_path), {0: "a", 1: "b", 2: "c"})



@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_single_csv_or_json_lines_file_of_image_paths_loads(tmp_path, suffix):
    paths = []
    for i, image in enumerate(IMAGES[:4]):
        paths.append(str(tmp_path / f"{i}.png"))
        image.save(paths[-1])
    rows = Dataset.from_dict({"image": paths, "label": ["cat", "dog", "cat", "dog"]})
    (rows.to_csv if suffix == ".csv" else rows.to_json)(str(tmp_path / f"data{suffix}"))  # to_json writes lines
    data = load_image_dataset(str(tmp_path / f"data{suffix}"), cache_dir=str(tmp_path / "cache"))
    assert data.id2label == {0: "cat", 1: "dog"} and data.image_column == "image"
    assert data.train[1][data.label_column] == 1
