"""Canaries for the upstream errors hf_cakd can tell apart only by their message: no type says what went wrong.

Each test makes the upstream library raise the real error and checks that hf_cakd's matcher still
recognises it, so a reworded message fails here instead of reaching users as a traceback. (torch's
DataLoader-worker wrapper has its own in tests/test_errors.py.)
"""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from torch import nn
from transformers import AutoModelForImageClassification

from hf_cakd.data.loading import _EMPTY_SPLIT
from hf_cakd.model_specs import _is_shape_mismatch
from tiny_models import build


def test_transformers_refusal_of_weights_that_do_not_fit_their_config_is_still_recognised(tmp_path):
    build("hf-resnet", num_labels=10).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_sizes": [8, 16, 24, 48]}))
    with pytest.raises(RuntimeError) as caught:
        AutoModelForImageClassification.from_pretrained(tmp_path)
    assert _is_shape_mismatch(caught.value), (
        f"transformers reworded its shape-mismatch error ({caught.value}): update model_specs._SHAPE_MISMATCH"
    )


def test_torchs_size_mismatch_which_transformers_passes_on_under_zero3_is_still_recognised():
    with pytest.raises(RuntimeError) as caught:
        nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(3, 2), "bias": torch.zeros(2)})
    assert _is_shape_mismatch(caught.value), (
        f"torch reworded load_state_dict's size mismatch ({caught.value}): update model_specs._SHAPE_MISMATCH"
    )


def test_datasets_error_for_a_split_without_rows_still_names_the_split(tmp_path):
    datasets.Dataset.from_dict({"label": [0, 1]}).to_parquet(tmp_path / "train.parquet")
    datasets.Dataset.from_dict({"label": [0, 1]}).select([]).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ValueError) as caught:
        datasets.load_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    found = _EMPTY_SPLIT.search(str(caught.value))
    assert found and found[1] == "test", (
        f"datasets reworded its error for an empty split ({caught.value}): update data.loading._EMPTY_SPLIT"
    )
