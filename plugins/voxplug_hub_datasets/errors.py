"""One-line explanations of why ``datasets`` could not open a dataset, naming what the user can change.

``datasets`` and ``huggingface_hub`` raise many exception types for a dataset that cannot be opened; these helpers
turn them into one sentence and blame the Hub token or the network only when the failure really was about access.
"""

from __future__ import annotations

SCRIPT_REFUSED = "Dataset scripts are no longer supported"


def explain_load_error(exc: BaseException) -> str:
    """What went wrong, in one line, with the fix where one is known."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if SCRIPT_REFUSED in text:
        return (
            "it is a loading-script dataset, which datasets 4 and later no longer run; many such datasets also "
            "publish Parquet on the branch refs/convert/parquet: set revision: refs/convert/parquet"
        )
    if is_access_error(exc):
        return (
            f"{text} (the Hub could not be reached or refused access: check the network, HF_HUB_OFFLINE, and for a "
            "gated or private dataset a Hub token in HF_TOKEN or `hf auth login`)"
        )
    return text


def is_access_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is about reaching the Hub or being allowed in, not about the data."""
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    access = (DatasetNotFoundError, GatedRepoError, RepositoryNotFoundError, LocalEntryNotFoundError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, access) or type(seen).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout"):
            return True
        if isinstance(seen, (ConnectionError, TimeoutError)):
            return True
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if status in (401, 403):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
