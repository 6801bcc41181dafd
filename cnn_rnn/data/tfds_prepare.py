"""Opening a tfds split for random access, or preparing it once, or saying in one line how.

Reading a prepared dataset needs neither TensorFlow nor network (`tfds.data_source` over
ArrayRecord files). Preparing one (download + conversion) needs TensorFlow, `importlib_resources`
(tfds 4.9.10 imports it but declares it only for old Pythons) and the download hosts. When the
hosts are unreachable, preparation fails within seconds with one `ConfigError` that says how to
prepare elsewhere and where to copy the folder, and leaves no partial downloads behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

from cnn_rnn.errors import ConfigError

log = logging.getLogger(__name__)

# Seconds to wait for a TCP connection to a download host before calling the machine offline.
CONNECT_TIMEOUT_S = 3.0
# tfds tries its mirror of prepared datasets first, so it is a download host of every dataset.
TFDS_MIRROR = "storage.googleapis.com"
WHERE_TFDS_LOOKS = "data.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets"


def preparation_modules_missing() -> list[str]:
    """Return the modules preparing a tfds dataset needs that are not importable."""
    return [m for m in ("tensorflow", "importlib_resources")
            if importlib.util.find_spec(m) is None]


def prepare_command(name: str, data_dir: str | None) -> str:
    """Return the shell command that prepares `name` as ArrayRecord in `data_dir`."""
    return (f"pip install tensorflow importlib_resources && python -c \"import "
            f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir={data_dir!r})"
            f".download_and_prepare(file_format='array_record')\"")


def download_hosts(builder: Any) -> list[str]:
    """Return the hosts `builder` downloads from: tfds' mirror, then its checksummed URLs."""
    hosts = [TFDS_MIRROR]
    try:
        url_infos = builder.url_infos or {}
    except ModuleNotFoundError:  # tfds reads checksums with importlib_resources: the mirror only
        url_infos = {}
    for url in url_infos:
        host = urlparse(url).hostname
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def unreachable_host(hosts: Sequence[str], timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Return the first of `hosts` that takes no TCP connection on port 443, else None."""
    for host in hosts:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                pass
        except OSError:
            return host
    return None


def offline_error(name: str, data_dir: str | None, builder_dir: str, why: str) -> ConfigError:
    """Return the one-line error for a dataset that cannot be downloaded here."""
    return ConfigError("data.data_dir", f"tfds dataset {name!r} is not prepared in {builder_dir} "
                       f"and cannot be downloaded here ({why}); prepare it on a machine with "
                       f"network: {prepare_command(name, data_dir)}, then copy the folder "
                       f"{builder_dir} to the same place here (tfds looks in {WHERE_TFDS_LOOKS})")


def remove_partial_files(root: str, since: float) -> None:
    """Delete tfds' partial downloads (`*.tmp.*`) and `incomplete.*` folders made after `since`."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        for d in list(dirnames):
            path = os.path.join(dirpath, d)
            if d.startswith("incomplete.") and os.path.getmtime(path) >= since:
                shutil.rmtree(path, ignore_errors=True)
                dirnames.remove(d)
        for f in filenames:
            path = os.path.join(dirpath, f)
            if ".tmp." in f and os.path.getmtime(path) >= since:
                with contextlib.suppress(OSError):
                    os.remove(path)


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` (or its cause) is a network failure: OSError or a requests/urllib3 one."""
    while error is not None:
        module = type(error).__module__.split(".")[0]
        if isinstance(error, OSError) or module in ("requests", "urllib3"):
            return True
        error = error.__cause__ or error.__context__
    return False


def prepare(builder: Any, name: str, data_dir: str | None) -> None:
    """Download and prepare `builder` as ArrayRecord, or raise a one-line ConfigError."""
    missing = preparation_modules_missing()
    if missing:
        raise ConfigError("data.data_dir", f"tfds dataset {name!r} is not prepared in "
                          f"{builder.data_dir}; preparing it needs {' and '.join(missing)} once: "
                          f"{prepare_command(name, data_dir)}")
    host = unreachable_host(download_hosts(builder))
    if host is not None:
        raise offline_error(name, data_dir, builder.data_dir, f"{host} is unreachable")
    log.info("Preparing tfds %s in %s as ArrayRecord (downloads once)", name, builder.data_dir)
    started = time.time() - 1.0  # mtime granularity
    try:
        builder.download_and_prepare(file_format="array_record")
    except Exception as e:
        dataset_dir = os.path.dirname(builder.data_dir)  # <data_dir>/<name>/<version>
        for root in (os.path.join(os.path.dirname(dataset_dir), "downloads"), dataset_dir):
            remove_partial_files(root, started)
        if is_connection_error(e):
            raise offline_error(name, data_dir, builder.data_dir,
                                f"the download failed: {type(e).__name__}") from e
        raise


@contextlib.contextmanager
def absl_errors_only() -> Iterator[None]:
    """Silence tfds' absl warnings (e.g. "Variant folder ... has no dataset_info.json").

    Looking for a dataset that is not there is a normal step here; what the user needs to know
    is in the ConfigError raised afterwards, on one line.
    """
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def open_split(name: str, split: str, data_dir: str | None, field: str) -> Sequence[Any]:
    """Return the random-access tfds data source of `name`/`split`, preparing it if possible.

    `field` names the config key that chose `split`, for the error a bad split gives.
    """
    with absl_errors_only():
        return _open_split(name, split, data_dir, field)


def _open_split(name: str, split: str, data_dir: str | None, field: str) -> Sequence[Any]:
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    # An unprepared dataset reads as TFRecord-only, which has no random access: NotImplementedError.
    except (NotImplementedError, ValueError, KeyError) as e:
        error = e
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        prepare(builder, name, data_dir)
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    if isinstance(error, NotImplementedError):
        raise ConfigError("data.data_dir", f"tfds dataset {name!r} in {builder.data_dir} is "
                          f"prepared as TFRecord only (no random access); prepare it as "
                          f"ArrayRecord in another data_dir: {prepare_command(name, data_dir)}")
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ConfigError(f"data.{field}", f"cannot read split {split!r} of {name}: {first_line}")
