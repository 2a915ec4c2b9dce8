"""Saving and loading job checkpoints and results: ``braket.jobs.data_persistence``'s API,
with atomic durable writes, merges that never unpickle, and names that stay inside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from jobpersist._durability import resolve as durability_mode
from jobpersist._environment import checkpoint_path, get_job_name, results_path
from jobpersist._format.conversion import coerce_keys
from jobpersist._format.data_format import (
    Format,
    PersistedJobDataFormat,
    coerce_format,
    result_format,
    warn_if_not_pickled,
)
from jobpersist._format.envelope import write_envelope
from jobpersist._format.load import load_file
from jobpersist._format.results import merge_results
from jobpersist._pickle.policy import (
    ALLOW_PICKLE_DEFAULT,
    pickle_mode,
)


def save_job_checkpoint(
    checkpoint_data: dict[str, Any],
    checkpoint_file_suffix: str = "",
    data_format: PersistedJobDataFormat = PersistedJobDataFormat.PLAINTEXT,
) -> None:
    """Saves the specified `checkpoint_data` to the local output directory, specified by
    the container environment variable `AMZN_BRAKET_CHECKPOINT_DIR`, with the filename
    `f"{job_name}(_{checkpoint_file_suffix}).json"`. The `job_name` refers to the name of the
    current job and is retrieved from the container environment variable
    `AMZN_BRAKET_JOB_NAME`. The `checkpoint_data` values are serialized to the specified
    `data_format`.

    The file is replaced atomically: a save that fails or is killed leaves the previous
    checkpoint intact. How soon it is on the disk depends on `JOBPERSIST_DURABILITY`
    (`full`, `deferred`, the default, or `none`; see docs/durability.md).

    Args:
        checkpoint_data (dict[str, Any]): Dict that specifies the checkpoint data to be persisted.
        checkpoint_file_suffix (str): str that specifies the file suffix to be used for
            the checkpoint filename. The resulting filename
            `f"{job_name}(_{checkpoint_file_suffix}).json"` is used to save the checkpoints.
            Default: ""
        data_format (PersistedJobDataFormat): The data format used to serialize the
            values. Note that for `PICKLED` data formats, the values are base64 encoded
            after serialization. As in amazon-braket-sdk, any other string (or number, or
            UTF-8 bytes) writes the values as plaintext, with that string as the file's
            `dataFormat`; a `UserWarning` says so when it looks like a request to pickle
            (`"pickle"`, `"PICKLED_V4"`). Default: PersistedJobDataFormat.PLAINTEXT

    Raises:
        ValueError: If the supplied `checkpoint_data` is `None` or empty, if `data_format` is
            invalid (`None`, an object), if the job name or `checkpoint_file_suffix` would
            leave the checkpoint directory, or on a circular reference.
        TypeError: If a value cannot be written in the data format.
        OSError: If the file cannot be written.
    """
    path, fmt, data = prepare_checkpoint(checkpoint_data, checkpoint_file_suffix, data_format)
    write_envelope(path, data.items(), fmt, durability_mode())


def prepare_checkpoint(
    checkpoint_data: dict[Any, Any], checkpoint_file_suffix: str, data_format: Any
) -> tuple[str, Format, dict[str, Any]]:
    """What every checkpoint save checks first: the target path, the format, and the data
    with its keys coerced. To be called by the public save function itself: a plaintext
    format that looks like a request to pickle is warned about at that function's caller.

    Raises:
        ValueError: Empty data, an invalid format, or a name that would leave the directory.
    """
    if not checkpoint_data:
        raise ValueError("The checkpoint_data argument cannot be empty.")
    fmt = coerce_format(data_format)
    path = checkpoint_path(get_job_name(), checkpoint_file_suffix)
    data = coerce_keys(dict(checkpoint_data))
    warn_if_not_pickled(data_format, fmt, stacklevel=3)
    return path, fmt, data


def load_job_checkpoint(
    job_name: str | None = None,
    checkpoint_file_suffix: str = "",
    allow_pickle: bool | Literal["safe"] = ALLOW_PICKLE_DEFAULT,
) -> dict[str, Any]:
    """Loads the job checkpoint data stored for the job named 'job_name', with the checkpoint
    file that ends with the `checkpoint_file_suffix`. The `job_name` can refer to any job whose
    checkpoint data you expect to be available in the file path specified by the
    `AMZN_BRAKET_CHECKPOINT_DIR` container environment variable. If not provided, this
    function will use the currently running job's name.

    Args:
        job_name (str | None): str that specifies the name of the job whose checkpoints
            are to be loaded. Default: current job name.
        checkpoint_file_suffix (str): str specifying the file suffix that is used to
            locate the checkpoint file to load. The resulting file name
            `f"{job_name}(_{checkpoint_file_suffix}).json"` is used to locate the
            checkpoint file. Default: ""
        allow_pickle (bool | Literal["safe"]): Whether to allow deserialization of pickled
            data. Pickle deserialization can execute arbitrary code and is unsafe on
            untrusted data. `"safe"` loads plain data only (numbers, strings, containers,
            datetime values, numpy arrays and scalars of numeric dtypes, PennyLane tensors)
            and runs no code from the file. Default: False, or `"safe"` when the
            environment variable `JOBPERSIST_ALLOW_PICKLE` is `safe`.

    Returns:
        dict[str, Any]: Dict that contains the checkpoint data persisted in the checkpoint file.

    Raises:
        FileNotFoundError: If the file `f"{job_name}(_{checkpoint_file_suffix})"` could not be
            found in the checkpoint directory.
        ValueError: If the data stored in the checkpoint file can't be deserialized (possibly
            due to corruption), if the job name or suffix would leave the directory, or if
            allow_pickle (or `JOBPERSIST_ALLOW_PICKLE`) is not a mode.
        UnsafePickleError: (a ValueError) If allow_pickle is "safe" and a value needs
            anything beyond plain data; the message names the key and what was refused.
        RuntimeError: If data is in PICKLED_V4 format and allow_pickle is False.
    """
    mode = pickle_mode(allow_pickle)
    path = checkpoint_path(job_name or get_job_name(), checkpoint_file_suffix)
    return load_file(path, mode)


def load_job_result(
    filename: str | Path | None = None,
    allow_pickle: bool | Literal["safe"] = ALLOW_PICKLE_DEFAULT,
) -> dict[str, Any]:
    """Loads job result of currently running job.

    Args:
        filename (str | Path | None): Location of job results. Default `results.json` in job
            results directory in a job instance or in working directory locally. This file
            must be in the format used by `save_job_result`.
        allow_pickle (bool | Literal["safe"]): Whether to allow deserialization of pickled
            data. Pickle deserialization can execute arbitrary code and is unsafe on
            untrusted data. `"safe"` loads plain data only (numbers, strings, containers,
            datetime values, numpy arrays and scalars of numeric dtypes, PennyLane tensors)
            and runs no code from the file. Default: False, or `"safe"` when the
            environment variable `JOBPERSIST_ALLOW_PICKLE` is `safe`.

    Returns:
        dict[str, Any]: Job result data of current job; empty if there is no results file.

    Raises:
        RuntimeError: If data is in PICKLED_V4 format and allow_pickle is False.
        UnsafePickleError: (a ValueError) If allow_pickle is "safe" and a value needs
            anything beyond plain data; the message names the key and what was refused.
        ValueError: If the results file can't be deserialized (possibly due to corruption),
            or if allow_pickle (or `JOBPERSIST_ALLOW_PICKLE`) is not a mode.
    """
    mode = pickle_mode(allow_pickle)
    try:
        return load_file(os.fspath(filename or results_path()), mode)
    except FileNotFoundError:
        return {}


def save_job_result(
    result_data: dict[str, Any] | Any,
    data_format: PersistedJobDataFormat | None = None,
) -> None:
    """Saves the `result_data` to the local output directory that is specified by the container
    environment variable `AMZN_BRAKET_JOB_RESULTS_DIR`, with the filename 'results.json'.
    The `result_data` values are serialized to the specified `data_format`, and merged over
    the results saved before (new keys win).

    The existing results are merged in their encoded form: pickled results are never
    unpickled. Concurrent calls, from any number of processes, lose no key.

    Args:
        result_data (dict[str, Any] | Any): Dict that specifies the result data to be
            persisted. If result data is not a dict, then it will be wrapped as
            `{"result": result_data}`.
        data_format (PersistedJobDataFormat | None): The data format used to serialize the
            values. Note that for `PICKLED` data formats, the values are base64 encoded
            after serialization. Saved pickled results stay pickled. Other values are read
            as by `save_job_checkpoint` (a falsy one means plaintext). Default:
            PersistedJobDataFormat.PLAINTEXT, or PICKLED_V4 when the saved results already are.

    Raises:
        TypeError: Plaintext over pickled results, or a value the format cannot hold.
        ValueError: If the existing results file is damaged, if `data_format` is invalid,
            or on a circular reference.
        OSError: If the file cannot be written.
    """
    if not isinstance(result_data, dict):
        result_data = {"result": result_data}
    requested = result_format(data_format)

    def new_values(fmt: Format) -> dict[Any, Any]:
        # Called by merge_results, called by save_job_result, called by the user.
        warn_if_not_pickled(data_format, fmt, stacklevel=4)
        return result_data

    merge_results(results_path(), requested, new_values, durability_mode())
