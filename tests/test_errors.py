"""The error policy: one exit code per kind of problem, one short line on stderr, no traceback
unless asked, and the original message even when the error was raised in a DataLoader worker."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from torch import nn
from torch.utils.data import DataLoader, Dataset

import hf_cakd
from hf_cakd.backbones import UnsupportedArchitectureError, staged_view
from hf_cakd.data import DataError, UndecodableImageError
from hf_cakd.errors import (
    DistillationError,
    InputError,
    NumericalError,
    Preempted,
    UsageError,
    run_cli,
    user_message,
)
from hf_cakd.label_mapping import LabelMappingError
from hf_cakd.model_specs import LabelMismatchError

BAD_ROW = "Row 3 of split 'train': the image in column 'img' is missing."


@pytest.mark.parametrize(
    ("error_type", "exit_code"), [(UsageError, 2), (InputError, 3), (NumericalError, 4), (Preempted, 75)]
)
def test_each_error_exits_with_its_code_and_one_line(error_type, exit_code, capsys, monkeypatch):
    monkeypatch.delenv("HF_CAKD_DEBUG", raising=False)

    def main(argv):
        raise error_type("what went wrong and how to fix it")

    with pytest.raises(SystemExit) as stopped:
        run_cli(main, [])
    assert stopped.value.code == exit_code
    assert capsys.readouterr().err == "error: what went wrong and how to fix it\n"


def test_success_returns_the_result_and_debug_flag_is_not_passed_on(monkeypatch):
    monkeypatch.delenv("HF_CAKD_DEBUG", raising=False)
    assert run_cli(lambda argv: argv, ["--output_dir", "x", "--debug"]) == ["--output_dir", "x"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback_and_keeps_the_exit_code(how, capsys, monkeypatch):
    monkeypatch.setenv("HF_CAKD_DEBUG", "1" if how == "env" else "0")

    def main(argv):
        raise InputError("bad data")

    with pytest.raises(SystemExit) as stopped:
        run_cli(main, ["--debug"] if how == "flag" else [])
    assert stopped.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("error: bad data\n")


def test_internal_errors_propagate_with_their_traceback():
    def main(argv):
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        run_cli(main, [])


def test_numerical_error_is_still_a_floating_point_error():
    with pytest.raises(FloatingPointError, match="nan"):
        raise NumericalError("loss is nan")


@pytest.mark.parametrize(
    "error_type", [DataError, UndecodableImageError, LabelMismatchError, LabelMappingError, UnsupportedArchitectureError]
)
def test_existing_errors_are_input_errors_and_value_errors(error_type):
    assert issubclass(error_type, InputError) and issubclass(error_type, ValueError)
    assert issubclass(error_type, DistillationError) and error_type.exit_code == 3


def test_every_exception_class_of_hf_cakd_is_in_the_error_policy():
    """A user-fixable problem exits with its code and one line: no exception type of hf_cakd outside errors.py's."""
    defined = set()
    for module_info in pkgutil.walk_packages(hf_cakd.__path__, prefix="hf_cakd."):
        module = importlib.import_module(module_info.name)
        defined |= {
            cls
            for cls in vars(module).values()
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == module.__name__
        }
    assert UnsupportedArchitectureError in defined and DataError in defined  # the walk reached the subpackages
    assert sorted(cls.__qualname__ for cls in defined if not issubclass(cls, DistillationError)) == []


def test_an_unsupported_architecture_exits_with_3_naming_the_supported_ones(capsys, monkeypatch):
    monkeypatch.delenv("HF_CAKD_DEBUG", raising=False)

    class Mystery(nn.Module):
        pass

    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda argv: staged_view(Mystery()), [])
    assert stopped.value.code == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: hf_cakd has no staged view for Mystery") and "register_adapter" in line


class FailingRows(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        try:
            raise OSError("broken bytes")
        except OSError as err:  # chained, as the data pipeline raises them
            raise UndecodableImageError(BAD_ROW + "\nSecond line of the message.") from err


def test_an_error_from_a_dataloader_worker_arrives_with_its_original_message(capsys, monkeypatch):
    monkeypatch.delenv("HF_CAKD_DEBUG", raising=False)
    loader = DataLoader(FailingRows(), num_workers=1)
    with pytest.raises(UndecodableImageError) as caught:
        next(iter(loader))
    # The canary of errors._WORKER_WRAPPER: torch's wording is all that tells the wrapper (torch 2.14.1).
    reworded = f"torch reworded its DataLoader-worker error ({caught.value}): update errors._WORKER_WRAPPER"
    assert str(caught.value).startswith("Caught UndecodableImageError in DataLoader worker process 0."), reworded
    assert user_message(caught.value) == BAD_ROW + "\nSecond line of the message.", reworded

    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda argv: next(iter(loader)), [])
    assert stopped.value.code == 3
    assert capsys.readouterr().err == f"error: {BAD_ROW}\nSecond line of the message.\n"
