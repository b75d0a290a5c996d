"""Fetching and unpacking public data sets, with progress and safe extraction.

Every recipe takes either a local directory (no network) or a URL; the URL
defaults to the data set's official source and can be overridden (an
environment variable per data set), which is how the tests serve a small
archive from 127.0.0.1.
"""

from __future__ import annotations

import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm


class DataError(SystemExit):
    """A data set cannot be had or is incomplete; exits with the message."""


def fetch(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` (skipped if it exists), showing progress."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {err}") from err
    partial.rename(dest)
    return dest


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a .tgz/.tar.gz/.tar/.zip archive into ``dest``, refusing paths that leave it."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _check_inside(root, name, archive)
            z.extractall(dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                _check_inside(root, member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: refusing to extract {member.name!r} (not a file or directory)")
            t.extractall(dest)
    else:
        raise DataError(f"{archive} is not a zip or tar archive")
    return dest


def _check_inside(root: Path, name: str, archive: Path) -> None:
    if not (root / name).resolve().is_relative_to(root):
        raise DataError(f"{archive}: refusing to extract {name!r} outside {root}")


def require_files(directory: Path, names: list[str], what: str) -> Path:
    """``directory`` if it holds every file in ``names``, else a clear error naming the missing ones."""
    if not directory.is_dir():
        raise DataError(f"{what}: {directory} is not a directory")
    missing = [n for n in names if not (directory / n).exists()]
    if missing:
        raise DataError(f"{what}: {directory} lacks {', '.join(missing)}")
    return directory
