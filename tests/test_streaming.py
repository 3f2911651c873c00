"""``--streaming``: a local parquet dataset read as a stream (``datasets.IterableDataset``) trains and
evaluates through the same entry as the other pipeline tests; what a stream cannot do is refused up front.
"""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import IterableDataset
from transformers import TrainerCallback

from hf_cakd.cli import distill_main
from hf_cakd.cli import main as hf_cakd_main
from hf_cakd.data import LabelColumnError, load_image_dataset
from test_distill_script import CIFAR_NAMES, TEST_ROWS, distill_args, workspace  # noqa: F401  (workspace: a fixture)
from test_faults_cli import rewrite_split, strings, with_dataset
from test_trainer import LOSS_TERMS, assert_states_close, launch_two_ranks


@pytest.fixture(autouse=True)
def no_wait_for_arrow_threads(monkeypatch):
    """datasets sleeps 5 s each time a shuffled parquet stream's reader closes, against a crash at interpreter
    exit (apache/arrow#45214); these runs close several, in a process that goes on."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0, raising=False)


class LogHistory(TrainerCallback):
    """The Trainer's log history, kept when training ends."""

    def on_train_end(self, args, state, control, **kwargs):
        self.logs = list(state.log_history)


def cli_error(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``hf-cakd distill argv``."""
    with pytest.raises(SystemExit) as exit_info:
        hf_cakd_main(["distill", *argv])
    return exit_info.value.code, capsys.readouterr().err


def test_a_streamed_parquet_dataset_trains_and_evaluates(workspace, tmp_path):  # noqa: F811
    output_dir = tmp_path / "out"
    history = LogHistory()
    args = distill_args(workspace, "kd", output_dir, "--streaming")
    args[args.index("--max_steps") + 1] = "3"
    returned = distill_main(args, callbacks=[history])

    results = json.loads((output_dir / "results.json").read_text())
    assert results == json.loads(json.dumps(returned))
    assert set(results["metrics"]) == {"teacher", "student"}
    for row in results["metrics"].values():
        assert 0 <= row["top1"] <= row["top5"] <= 1
        assert (row["top1"] * TEST_ROWS).is_integer()  # measured on the 16 streamed test rows
    assert results["input_resolution"]["student"]["size"] == [32, 32]
    card = (output_dir / "README.md").read_text(encoding="utf-8")
    assert "- steps trained: 3\n- effective batch size: 8" in card  # no epoch count: a stream's size is unknown
    losses = [entry for entry in history.logs if "loss" in entry]
    assert [entry["step"] for entry in losses] == [1, 2, 3]
    for entry in losses:
        assert {key.removeprefix("loss_") for key in entry if key.startswith("loss_")} == LOSS_TERMS["kd"]


def test_streaming_without_max_steps_is_a_usage_error(workspace, tmp_path, capsys):  # noqa: F811
    args = distill_args(workspace, "kd", tmp_path / "out", "--streaming")
    at = args.index("--max_steps")
    code, stderr = cli_error(args[:at] + args[at + 2 :], capsys)
    assert code == 2
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "--streaming needs --max_steps" in line and "Pass --max_steps N" in line and "drop --streaming" in line
    assert not (tmp_path / "out").exists()


def empty_row_3(table: pa.Table) -> pa.Table:
    images = table.column("img").to_pylist()
    images[3] = None
    field = table.schema.field("img")
    return table.set_column(table.schema.get_field_index("img"), field, pa.array(images, type=field.type))


def test_a_missing_image_in_a_stream_is_named_by_row_or_skipped(workspace, tmp_path, capsys):  # noqa: F811
    data = rewrite_split(workspace["data"], tmp_path / "missing", empty_row_3)
    args = with_dataset(distill_args(workspace, "kd", tmp_path / "stopped", "--streaming"), data)
    code, stderr = cli_error(args, capsys)
    assert code == 3
    assert "error: Row 3 of split 'train'" in stderr and "missing" in stderr and "--skip_bad_images" in stderr

    output_dir = tmp_path / "skipped"
    schedule = ["--streaming", "--skip_bad_images", "--max_steps", "6"]
    distill_main(with_dataset(distill_args(workspace, "kd", output_dir, *schedule), data))
    # 6 steps of 8 read the 48 streamed rows once: the empty one is skipped exactly once.
    assert json.loads((output_dir / "results.json").read_text())["skipped_images"] == {"train": 1, "eval": 0}


def test_string_labels_cannot_be_numbered_on_a_stream(workspace, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "string-labels"
    data.mkdir()
    for split in ("train", "test"):
        pq.write_table(strings(pq.read_table(workspace["data"] / f"{split}.parquet")), data / f"{split}.parquet")
    code, stderr = cli_error(with_dataset(distill_args(workspace, "kd", tmp_path / "out", "--streaming"), data), capsys)
    assert code == 3
    assert "error: The label column 'label' holds string values without class names" in stderr
    assert "ClassLabel" in stderr and "drop --streaming" in stderr


def test_a_streams_classes_come_from_its_features_and_its_labels_are_checked_as_read(workspace, tmp_path, capsys):  # noqa: F811
    def unlabelled_row_2(table: pa.Table) -> pa.Table:
        labels = table.column("label").to_pylist()
        labels[2] = -1
        return table.set_column(table.schema.get_field_index("label"), table.schema.field("label"), pa.array(labels))

    data = tmp_path / "unlabelled"
    data.mkdir()
    pq.write_table(pq.read_table(workspace["data"] / "train.parquet"), data / "train.parquet")
    pq.write_table(unlabelled_row_2(pq.read_table(workspace["data"] / "test.parquet")), data / "test.parquet")
    streamed = load_image_dataset(str(data), streaming=True)
    assert isinstance(streamed.train, IterableDataset) and isinstance(streamed.eval, IterableDataset)
    assert streamed.id2label == dict(enumerate(CIFAR_NAMES))  # from the ClassLabel feature, no row read

    code, stderr = cli_error(with_dataset(distill_args(workspace, "kd", tmp_path / "out", "--streaming"), data), capsys)
    assert code == 3
    assert "error: Row 2 of split 'test': label -1 is outside the 10 classes 0..9" in stderr
    with pytest.raises(LabelColumnError, match="The 'test' split has labels from -1 to 9"):  # not streamed: read ahead
        load_image_dataset(str(data))


@pytest.mark.slow
def test_a_stream_is_dispatched_to_several_processes_and_evaluated_once(workspace, tmp_path):  # noqa: F811
    """Accelerate's main process reads the stream and hands each process its rows, also where the eval split's
    files are uneven (read by file, one process would run out of batches first and the gathers would not match)."""
    data = tmp_path / "two-test-files"
    data.mkdir()
    pq.write_table(pq.read_table(workspace["data"] / "train.parquet"), data / "train.parquet")
    test = pq.read_table(workspace["data"] / "test.parquet")
    pq.write_table(test.slice(0, 7), data / "test-00000-of-00002.parquet")
    pq.write_table(test.slice(7, 2), data / "test-00001-of-00002.parquet")
    output_dir = tmp_path / "out"
    ranks = launch_two_ranks(
        tmp_path, with_dataset(distill_args(workspace, "kd", output_dir, "--streaming", "--disable_tqdm", "true"), data)
    )
    assert [r["world_size"] for r in ranks] == [2, 2] and all(len(r["batches"]) == 2 for r in ranks)
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])  # each process trained on rows of its own
    assert_states_close(ranks[1]["state"], ranks[0]["state"], atol=0, rtol=0)
    results = json.loads((output_dir / "results.json").read_text())
    for row in results["metrics"].values():
        assert (row["top1"] * 9).is_integer() and (row["top5"] * 9).is_integer()  # each of the 9 rows counted once


def uneven_files(workspace, folder, train_sizes=(5, 43), test_sizes=(3, 13)):  # noqa: F811
    """The workspace's rows in files of uneven sizes, for DataLoader workers that each read their own files."""
    folder.mkdir()
    for split, sizes in (("train", train_sizes), ("test", test_sizes)):
        table, start = pq.read_table(workspace["data"] / f"{split}.parquet"), 0
        for i, size in enumerate(sizes):
            pq.write_table(table.slice(start, size), folder / f"{split}-{i:05d}-of-{len(sizes):05d}.parquet")
            start += size
    return folder


def test_the_first_rows_of_a_stream_of_several_files_are_read_exactly_by_several_workers(workspace, tmp_path):  # noqa: F811
    """datasets' take() shares N out among the DataLoader workers, each taking its share from its own files: a
    worker whose files hold fewer rows than its share left --max_eval_samples short (8 of 10 rows here)."""
    from torch.utils.data import DataLoader

    from hf_cakd.run.plan import _first_rows

    streamed = load_image_dataset(str(uneven_files(workspace, tmp_path / "uneven")), streaming=True)
    loaded = load_image_dataset(str(workspace["data"]))
    for split, limit in ((streamed.eval, 10), (streamed.train, 20)):
        rows = _first_rows(split.cast_column("img", datasets.Image(decode=False)), limit)
        read = [row["img"]["bytes"] for row in DataLoader(rows, batch_size=None, num_workers=2, collate_fn=lambda x: x)]
        expected = loaded.eval if split is streamed.eval else loaded.train
        expected = expected.cast_column("img", datasets.Image(decode=False))["img"][:limit]
        assert read == [image["bytes"] for image in expected]  # the first N, in order, each once


def test_a_resumed_stream_counts_the_images_skipped_before_its_checkpoint(workspace, tmp_path):  # noqa: F811
    """results.json's skipped_images.train counts the whole run's batches, also those trained before a resume."""
    data = rewrite_split(workspace["data"], tmp_path / "missing", empty_row_3)
    output_dir = tmp_path / "out"
    schedule = ["--streaming", "--skip_bad_images", "--save_strategy", "steps", "--save_steps", "3"]
    args = with_dataset(distill_args(workspace, "kd", output_dir, *schedule), data)
    at = args.index("--max_steps")
    distill_main([*args[:at], "--max_steps", "3", *args[at + 2 :]])
    skipped_before = json.loads((output_dir / "checkpoint-3" / "skipped_images.json").read_text())["train"]
    distill_main([*args[:at], "--max_steps", "6", *args[at + 2 :], "--resume_from_checkpoint", "last"])
    # 6 steps of 8 read the 48 streamed rows once, in the same order resumed or not: the empty one counts once.
    assert skipped_before == 1
    assert json.loads((output_dir / "results.json").read_text())["skipped_images"] == {"train": 1, "eval": 0}
