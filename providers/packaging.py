"""The training scripts as one deterministic archive, named by its content hash.

Every cloud job gets the same bytes: a gzip'd tar of training_scripts/ with
fixed mtimes, owners and order, so an unchanged tree hashes the same and is
not uploaded again.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "training_scripts"
ARCHIVE_NAME = "sourcedir.tar.gz"
_SKIP = {"__pycache__", ".pytest_cache"}


@dataclass(frozen=True)
class Archive:
    data: bytes
    sha256: str

    @property
    def short(self) -> str:
        return self.sha256[:16]


@functools.cache
def scripts_archive(root: Path = SCRIPTS_DIR) -> Archive:
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too, or the same tree hashes differently each time.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root.parent)
            if any(part in _SKIP for part in relative.parts) or path.suffix == ".pyc":
                continue
            info = tar.gettarinfo(str(path), arcname=str(relative))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    data = buffer.getvalue()
    return Archive(data=data, sha256=hashlib.sha256(data).hexdigest())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
