"""A model or data set the Hub cannot deliver is an input error naming the flag, the id and the fix.

Every case goes through the real Hub client: offline (HF_HUB_OFFLINE=1, as all tests run) with an
empty cache, and answers of the fake Hub in tests/fake_hub.py (not found, gated, a download cut off)
for the others. The command line's exit codes for them: tests/test_cluster_faults_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import constants

import fake_hub
from hf_cakd.data import load_image_dataset
from hf_cakd.errors import InputError
from hf_cakd.hub_errors import HubAccessError, check_reachable, hub_failure
from hf_cakd.model_specs import load_classifier
from tiny_models import build

MODEL_ID, DATASET_ID = "someone/tiny-teacher", "someone/tiny-data"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def requests_made():
    """The requests that reach the fake Hub (none may, offline)."""
    made = []
    fake_hub.install(fake_hub.refusing("RepoNotFound", requests=made))
    return made


def load_model(tmp_path):
    return load_classifier(MODEL_ID, role="teacher", cache_dir=str(tmp_path / "hub-cache"))


def load_data(tmp_path):
    return load_image_dataset(DATASET_ID, cache_dir=str(tmp_path / "datasets-cache"))


def test_offline_a_model_not_in_the_cache_names_the_flag_the_variable_and_hf_download(tmp_path, requests_made):
    with pytest.raises(HubAccessError) as err:
        load_model(tmp_path)
    message = str(err.value)
    assert message.startswith(f"--teacher {MODEL_ID!r} is not in the local cache and HF_HUB_OFFLINE=1")
    assert f"`hf download {MODEL_ID}`" in message and "there is no local folder" in message
    assert requests_made == []  # nothing tried the network, so nothing waited for it
    assert err.value.exit_code == 3 and "\n" not in message


def test_offline_a_dataset_not_in_the_cache_names_a_local_copy(tmp_path, requests_made):
    with pytest.raises(HubAccessError) as err:
        load_data(tmp_path)
    message = str(err.value)
    assert message.startswith(f"--dataset {DATASET_ID!r} is not in the local cache and HF_HUB_OFFLINE=1")
    fetch = f"`hf download {DATASET_ID} --repo-type dataset --local-dir <folder>`, then pass --dataset <folder>"
    assert fetch in message
    assert requests_made == []


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Offline mode off for huggingface_hub, transformers and datasets (the fake Hub answers); no Hub token."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(
    "load, flag, page", [(load_model, "--teacher", MODEL_ID), (load_data, "--dataset", f"datasets/{DATASET_ID}")]
)
def test_an_id_the_hub_does_not_know_says_no_local_folder_was_found_either(tmp_path, online, load, flag, page):
    fake_hub.install(fake_hub.refusing("RepoNotFound"))
    with pytest.raises(HubAccessError) as err:
        load(tmp_path)
    message = str(err.value)
    spec = MODEL_ID if flag == "--teacher" else DATASET_ID
    assert message.startswith(f"{flag} {spec!r} was not found: there is no local folder ")
    assert f"https://huggingface.co/{page}" in message and "(no Hub token is set)" in message
    assert "`hf auth login` (or set HF_TOKEN)" in message


@pytest.mark.parametrize("token", [None, "hf_not_granted"])
def test_a_gated_model_names_its_page_and_how_to_log_in(tmp_path, online, monkeypatch, token):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    fake_hub.install(fake_hub.refusing("GatedRepo"))
    with pytest.raises(HubAccessError) as err:
        load_model(tmp_path)
    message = str(err.value)
    state = "the Hub token in use has no access to it" if token else "no Hub token is set"
    assert message.startswith(f"--teacher {MODEL_ID!r} is a gated repository and {state}.")
    assert f"Accept its terms at https://huggingface.co/{MODEL_ID}" in message and "`hf auth login`" in message
    assert token is None or token not in message


def test_a_download_cut_off_midway_says_so_and_the_same_call_again_finishes_it(tmp_path, online):
    build("hf-resnet").save_pretrained(tmp_path / "served")
    requests = []
    fake_hub.install(fake_hub.serving(tmp_path / "served", cut_off="model.safetensors", requests=requests))
    with pytest.raises(HubAccessError) as err:
        load_model(tmp_path)
    message = str(err.value)
    assert message.startswith(f"Downloading --teacher {MODEL_ID!r} failed: the network failed (ReadError: ")
    assert "Run the same command again to resume: the files already downloaded stay in the cache." in message
    got = [path for method, path in requests if method == "GET" and "/resolve/" in path]
    assert got == [f"/{MODEL_ID}/resolve/main/config.json", f"/{MODEL_ID}/resolve/main/model.safetensors"]

    requests.clear()
    model = load_model(tmp_path)  # the connection is back
    got = [path for method, path in requests if method == "GET" and "/resolve/" in path]
    assert got == [f"/{MODEL_ID}/resolve/main/model.safetensors"]  # config.json came from the cache
    assert model.config.num_labels == build("hf-resnet").config.num_labels


def test_datasets_own_errors_are_read_by_type_and_other_errors_are_left_alone(monkeypatch):
    # datasets re-raises what stopped it as its own types, without the Hub's error as the cause.
    unreachable = ConnectionError(f"Couldn't reach '{DATASET_ID}' on the Hub (ConnectError)")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    message = hub_failure(unreachable, f"--dataset {DATASET_ID!r}", DATASET_ID, "dataset")
    assert message.startswith(f"Downloading --dataset {DATASET_ID!r} failed: the network failed (ConnectionError: ")
    assert "set HF_HUB_OFFLINE=1 and fetch it beforehand" in message
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in hub_failure(unreachable, "--dataset x", "x", "dataset")
    not_found = hub_failure(DatasetNotFoundError("gated"), "--dataset x", "x", "dataset")
    assert not_found.startswith("--dataset x was not found")
    assert hub_failure(KeyError("label"), "--dataset x", "x", "dataset") is None


# ---- a spec that is neither a local path nor on the Hub: one line at once, whatever the network does ----


def test_a_mistyped_path_without_network_is_told_at_once_with_the_closest_folder(online, monkeypatch):
    monkeypatch.chdir(ROOT)
    made = []
    fake_hub.install(fake_hub.unreachable(requests=made))
    with pytest.raises(HubAccessError) as err:
        check_reachable("demo_data/cifar", "--dataset 'demo_data/cifar'", "dataset")
    message = str(err.value)
    assert message.startswith(f"--dataset 'demo_data/cifar': there is no local folder or file {ROOT}/demo_data/cifar ")
    assert "(closest: demo_data/cifar10)" in message
    assert "the Hub could not be reached to look for a dataset of that id (ConnectError: " in message
    assert "run the same command again" not in message.lower() and "\n" not in message
    assert [request for request in made if "cifar" in request[1]] == [("GET", "/api/datasets/demo_data/cifar")]  # once


def test_an_id_the_hub_does_not_know_is_refused_before_loading_naming_the_closest_folder(online, monkeypatch):
    monkeypatch.chdir(ROOT)
    fake_hub.install(fake_hub.refusing("RepoNotFound"))
    with pytest.raises(HubAccessError, match=r"^--teacher 'demo_data/model' was not found: there is no local folder or "
                       r"file \S+/demo_data/model \(closest: demo_data/models\), and the Hub has no model demo_data/model"):
        check_reachable("demo_data/model", "--teacher 'demo_data/model'")


def test_an_existing_path_a_cached_copy_and_offline_mode_ask_the_hub_nothing(online, monkeypatch, tmp_path):
    made = []
    fake_hub.install(fake_hub.unreachable(requests=made))
    check_reachable(str(ROOT / "demo_data" / "cifar10"), "--dataset x", "dataset")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--someone--cached").mkdir()
    check_reachable("someone/cached", "--teacher x")  # the loaders use the cached copy without the Hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    check_reachable(MODEL_ID, "--teacher x")  # offline, the loaders answer at once themselves
    assert [request for request in made if "/api/agent-harnesses" not in request[1]] == []


def test_a_spec_that_is_neither_a_path_nor_a_hub_id_is_a_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-teacher").mkdir()
    with pytest.raises(InputError, match=r"^--teacher './my-teachr': there is no local folder or file \S+/my-teachr "
                       r"\(closest: my-teacher\), and it is no Hub id either \(owner/name\)\."):
        check_reachable("./my-teachr", "--teacher './my-teachr'")
