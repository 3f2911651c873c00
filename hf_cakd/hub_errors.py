"""A model, data set or card the Hub cannot deliver, as one line naming the flag, the id and the fix.

huggingface_hub raises typed errors (``OfflineModeIsEnabled``, ``RepositoryNotFoundError``,
``GatedRepoError``, its HTTP client's transport errors); transformers re-raises them as an
``OSError`` chained to the original, datasets as its own ``ConnectionError`` or
``DatasetNotFoundError``. :func:`hub_failure` finds which of them is behind an error and says what
to do about it; the loaders turn that into :class:`HubAccessError` (exit code 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import datasets
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import constants, get_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

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


def _local_folder_note(spec: str) -> str:
    return f"there is no local folder {os.path.abspath(spec)}"


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
