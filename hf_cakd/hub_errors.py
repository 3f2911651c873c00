"""A model, data set or card the Hub cannot deliver, as one line naming the flag, the id and the fix.

huggingface_hub raises typed errors (``OfflineModeIsEnabled``, ``RepositoryNotFoundError``,
``GatedRepoError``, its HTTP client's transport errors); transformers re-raises them as an
``OSError`` chained to the original, datasets as its own ``ConnectionError`` or
``DatasetNotFoundError``. :func:`hub_failure` finds which of them is behind an error and says what
to do about it; the loaders turn that into :class:`HubAccessError` (exit code 3).
:func:`check_reachable` asks the Hub once, before anything loads, about a spec that is no local
path, so a mistyped path is told so in seconds whatever the network does.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

import datasets
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    HTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import validate_repo_id

from .errors import InputError

_TOKEN_FIX = "log in on this machine with `hf auth login` (or set HF_TOKEN)"


class HubAccessError(InputError):
    """A model, data set or card on the Hub that cannot be fetched: offline, not found, gated, or the network failed."""


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every error it was raised from or while handling, each once."""
    seen, pending = set(), [err]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def _is_offline(repo_type: str) -> bool:
    # datasets also reads HF_DATASETS_OFFLINE, at import like huggingface_hub.
    return constants.is_offline_mode() or (repo_type == "dataset" and datasets.config.HF_HUB_OFFLINE)


def _is_network_failure(err: BaseException) -> bool:
    """No answer, an answer cut off, or a server error: the same command may work when run again."""
    if isinstance(err, HfHubHTTPError):
        return err.response is not None and (err.response.status_code >= 500 or err.response.status_code in (408, 429))
    # HTTPError is the base of huggingface_hub's HTTP client's errors (connect, read, timeout, protocol).
    return isinstance(err, (HTTPError, ConnectionError, TimeoutError))


def _token_state() -> str:
    return "no Hub token is set" if get_token() is None else "the Hub token in use has no access to it"


def closest_paths(spec: str) -> list[str]:
    """Existing paths whose name is closest to the first part of ``spec`` that does not exist (at most three)."""
    path = Path(spec)
    parent = next((folder for folder in path.parents if folder.is_dir()), None)
    if parent is None:
        return []
    missing = path.relative_to(parent).parts[0]
    return [str(parent / name) for name in difflib.get_close_matches(missing, sorted(os.listdir(parent)), n=3)]


def _local_folder_note(spec: str) -> str:
    closest = closest_paths(spec)
    return f"there is no local folder or file {os.path.abspath(spec)}" + (
        f" (closest: {', '.join(closest)})" if closest else ""
    )


def _page(spec: str, repo_type: str) -> str:
    return f"{constants.ENDPOINT}/{'datasets/' if repo_type == 'dataset' else ''}{spec}"


def _how_to_fetch(spec: str, repo_type: str) -> str:
    if repo_type == "dataset":
        return f"`hf download {spec} --repo-type dataset --local-dir <folder>`, then pass --dataset <folder>"
    return f"`hf download {spec}` with the same HF_HOME, or save it with save_pretrained and pass that folder"


def error_summary(err: BaseException) -> str:
    """``Type: first line of the message``, for a one-line report."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def hub_failure(err: BaseException, who: str, spec: str, repo_type: str = "model") -> str | None:
    """What kept the Hub from delivering ``spec`` and how to fix it, or None when ``err`` is no Hub problem.

    ``who`` names it as the user gave it (``"--teacher 'google/vit-base-patch16-224'"``);
    ``repo_type`` is ``"model"`` or ``"dataset"``. Checked in this order: a gated repository, one
    that does not exist (or is private), one that is not cached while ``HF_HUB_OFFLINE`` is set, and
    a network that failed (running the same command again resumes: finished files stay cached).
    """
    causes = list(_chain(err))
    if any(isinstance(e, GatedRepoError) for e in causes):
        return (
            f"{who} is a gated repository and {_token_state()}. Accept its terms at {_page(spec, repo_type)}, then "
            f"{_TOKEN_FIX}."
        )
    # datasets reports a gated data set as not found too: the message covers both.
    if any(isinstance(e, (RepositoryNotFoundError, DatasetNotFoundError)) for e in causes):
        return (
            f"{who} was not found: {_local_folder_note(spec)}, and the Hub has no {repo_type} {spec} that this machine "
            f"may see ({_token_state()}). Check the id; if it is private or gated ({_page(spec, repo_type)}), "
            f"{_TOKEN_FIX}."
        )
    offline = any(isinstance(e, OfflineModeIsEnabled) for e in causes) or (
        _is_offline(repo_type) and any(isinstance(e, (LocalEntryNotFoundError, ConnectionError)) for e in causes)
    )
    if offline:
        return (
            f"{who} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it "
            f"({_local_folder_note(spec)}). Fetch it beforehand on a machine with internet access: "
            f"{_how_to_fetch(spec, repo_type)}."
        )
    failure = next((e for e in reversed(causes) if _is_network_failure(e)), None)
    if failure is not None:
        return (
            f"Downloading {who} failed: the network failed ({error_summary(failure)}). Run the same command again to "
            "resume: the files already downloaded stay in the cache. On compute nodes without internet access, set "
            f"HF_HUB_OFFLINE=1 and fetch it beforehand: {_how_to_fetch(spec, repo_type)}."
        )
    return None


def _is_cached(spec: str, repo_type: str) -> bool:
    """Whether the Hub cache (or, for a data set, the datasets cache) holds a copy of ``spec``."""
    folders = [os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=spec, repo_type=repo_type))]
    if repo_type == "dataset":
        folders.append(os.path.join(datasets.config.HF_DATASETS_CACHE, spec.replace("/", "___")))
    return any(os.path.isdir(folder) for folder in folders)


def check_reachable(spec: str, who: str, repo_type: str = "model") -> None:
    """Stop at once, in one line, on a ``spec`` that is neither an existing path nor a repository the Hub has.

    ``who`` names it as the user gave it (``"--dataset 'demo_data/cifar'"``). A spec that is no valid
    Hub id is refused as a missing path. Otherwise, unless ``HF_HUB_OFFLINE`` is set (the loaders then
    answer at once) or a cached copy exists, the Hub is asked once, without retries and within
    ``HF_HUB_ETAG_TIMEOUT`` seconds, whether it has the repository: a mistyped local path on a
    machine whose network fails is told so in seconds, not after the downloads' retries. The
    message names the closest existing paths and what the Hub said.
    """
    if os.path.exists(spec):
        return
    try:
        validate_repo_id(spec)
    except HFValidationError as err:
        raise InputError(
            f"{who}: {_local_folder_note(spec)}, and it is no Hub id either (owner/name). Pass an existing path "
            f"or a Hub {repo_type} id."
        ) from err
    if _is_offline(repo_type) or _is_cached(spec, repo_type):
        return
    try:
        HfApi().repo_info(spec, repo_type=repo_type, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as err:  # what the Hub said, worded below; anything else is a bug and propagates
        if _is_network_failure(err):
            raise HubAccessError(
                f"{who}: {_local_folder_note(spec)}, and the Hub could not be reached to look for a {repo_type} of "
                f"that id ({error_summary(err)}). Check the path; for a Hub {repo_type}, run where the Hub can be "
                f"reached, or fetch it beforehand: {_how_to_fetch(spec, repo_type)}."
            ) from err
        message = hub_failure(err, who, spec, repo_type)
        if message is None:
            raise
        raise HubAccessError(message) from err
