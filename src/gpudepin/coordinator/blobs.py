"""A content-addressed blob store on the filesystem: files named by their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from gpudepin.core.errors import InvalidInput, NotFound, PayloadTooLarge


def check_sha256(sha: str) -> str:
    s = sha.lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise InvalidInput(f"not a sha256 digest: {sha!r}")
    return s


# sha256s to the bytes of those kept elsewhere (the database, for results handed in
# inline): a file each cost more than the rest of a tiny task's handling on some disks
Kept = Callable[[list[str]], dict[str, bytes]]


class BlobStore:
    """Blobs under ``root/ab/abcdef…``; writes are atomic (temp file, then rename).

    Small blobs may live in ``kept`` instead (see ``Kept``): ``kept_bytes`` reads them
    there, and ``open_path`` writes one out as a file the first time a caller needs its
    path.
    """

    def __init__(self, root: Path, max_bytes: int, kept: Kept | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._kept = kept
        root.mkdir(parents=True, exist_ok=True)
        self._folders: set[str] = set()  # the ``ab/`` folders known to exist

    def path(self, sha: str) -> Path:
        s = check_sha256(sha)
        return self.root / s[:2] / s

    def exists(self, sha: str) -> bool:
        """Whether the blob is here as a file (one kept elsewhere is not)."""
        return self.path(sha).exists()

    def open_path(self, sha: str) -> Path:
        p = self.path(sha)
        if p.exists():
            return p
        data = self.kept_bytes([sha]).get(sha)
        if data is None:
            raise NotFound(f"no blob {sha}", hint="Upload it first.")
        self.put_bytes(data)
        return p

    def kept_bytes(self, shas: list[str]) -> dict[str, bytes]:
        """The bytes of those of ``shas`` kept elsewhere, read in one call."""
        return self._kept(shas) if self._kept else {}

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream, refusing it as soon as it passes the size limit."""
        w = self.writer()
        try:
            for chunk in chunks:
                w.write(chunk)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def put_bytes(self, data: bytes) -> str:
        """Store a small blob held in memory as a file (an inline result that a check
        reads as one); its sha256.

        Content-addressed, so bytes already here are not written again; otherwise one
        temp file named after the content and this thread, renamed into place. Written
        with the ``os`` calls themselves: an agent of tiny tasks hands in hundreds of
        results a second, and pathlib's file objects and the ``mkdir`` that failed on
        every call but the first of its directory cost more than the writes.
        """
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"blob is larger than the limit of {self.max_bytes} bytes")
        sha = hashlib.sha256(data).hexdigest()
        folder = os.path.join(self.root, sha[:2])
        dest = os.path.join(folder, sha)
        if os.path.exists(dest):
            return sha
        if sha[:2] not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(sha[:2])
        tmp = os.path.join(self.root, f".inline-{sha}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        return sha

    def put_file(self, path: Path) -> tuple[str, int]:
        with path.open("rb") as fh:
            return self.put_stream(iter(lambda: fh.read(1 << 20), b""))


class BlobWriter:
    """An upload in progress: hashed and size-checked chunk by chunk, atomic on commit."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.digest = hashlib.sha256()
        self.size = 0
        fd, tmp = tempfile.mkstemp(dir=store.root, prefix=".upload-")
        self.tmp = Path(tmp)
        self.fh = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.store.max_bytes:
            self.abort()
            raise PayloadTooLarge(
                f"upload is larger than the limit of {self.store.max_bytes} bytes"
            )
        self.digest.update(chunk)
        self.fh.write(chunk)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def commit(self) -> tuple[str, int]:
        self.fh.close()
        sha = self.digest.hexdigest()
        dest = self.store.path(sha)
        dest.parent.mkdir(exist_ok=True)
        os.replace(self.tmp, dest)
        return sha, self.size
