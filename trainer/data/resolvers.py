"""Image resolvers: map an image path of a JSONL row to the image's bytes.

A JSONL dataset names its images by relative path into a directory or an
archive (zip, tar, tar.gz) uploaded beside it. Paths are checked before use:
absolute paths, ``..`` components, backslashes and NUL are refused (path
traversal, DESIGN.md §8), and archive members are read with a size limit (zip
bombs) and never through links.
"""

from __future__ import annotations

import posixpath
import tarfile
import threading
import zipfile
from typing import IO

import fsspec

from trainer.data.schema import ImageResolver

# A single image larger than this is refused before it is read.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


class ImageResolveError(ValueError):
    """An image path that cannot be resolved; the message names the path and why."""


def safe_relative_path(path: str) -> str:
    """Normalise a relative image path, refusing anything that could leave its root.

    >>> safe_relative_path("images/./a.png")
    'images/a.png'
    >>> safe_relative_path("../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trainer.data.resolvers.ImageResolveError: image path '../etc/passwd' must stay inside ...
    """
    if not isinstance(path, str) or not path:
        raise ImageResolveError("image path must be a non-empty string")
    if "\x00" in path or "\\" in path:
        raise ImageResolveError(f"image path {path[:80]!r} must not contain NUL or backslashes")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise ImageResolveError(f"image path {path[:80]!r} must be relative")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ImageResolveError(f"image path {path[:80]!r} must stay inside the archive (no '..')")
    if not parts:
        raise ImageResolveError(f"image path {path[:80]!r} names no file")
    return "/".join(parts)


def _read_limited(stream: IO[bytes], size: int | None, path: str) -> bytes:
    if size is not None and size > MAX_IMAGE_BYTES:
        raise ImageResolveError(f"image {path!r} is {size} bytes; the limit is {MAX_IMAGE_BYTES}")
    data = stream.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageResolveError(f"image {path!r} is larger than {MAX_IMAGE_BYTES} bytes")
    return data


class DirectoryResolver:
    """Reads images under a directory URI (``file://``, plain path, ``memory://``, ``s3://``)."""

    def __init__(self, root: str, *, storage_options: dict[str, object] | None = None) -> None:
        self.root = root.rstrip("/")
        self._storage_options = storage_options or {}

    def __call__(self, path: str) -> bytes:
        relative = safe_relative_path(path)
        uri = f"{self.root}/{relative}"
        try:
            with fsspec.open(uri, "rb", **self._storage_options) as stream:
                return _read_limited(stream, None, path)
        except FileNotFoundError:
            raise ImageResolveError(f"image {path!r} not found under {self.root}") from None
        except IsADirectoryError:
            raise ImageResolveError(f"image {path!r} is a directory") from None


class ArchiveResolver:
    """Reads images from a zip or tar archive; the member index is built on first use.

    A tar.gz archive has no random access: each read decompresses from the
    start, so prefer zip or plain tar for large image sets.
    """

    def __init__(self, uri: str, *, storage_options: dict[str, object] | None = None) -> None:
        if not uri.lower().endswith(ARCHIVE_SUFFIXES):
            raise ValueError(f"archive {uri!r} must end with one of {', '.join(ARCHIVE_SUFFIXES)}")
        self.uri = uri
        self._storage_options = storage_options or {}
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, zipfile.ZipInfo | tarfile.TarInfo] = {}

    def _open(self) -> None:
        self._file = fsspec.open(self.uri, "rb", **self._storage_options).open()
        try:
            if self.uri.lower().endswith(".zip"):
                self._zip = zipfile.ZipFile(self._file)
                infos: list[zipfile.ZipInfo | tarfile.TarInfo] = [
                    i for i in self._zip.infolist() if not i.is_dir()
                ]
                names = [i.filename for i in infos]
            else:
                self._tar = tarfile.open(fileobj=self._file, mode="r:*")
                infos = [i for i in self._tar.getmembers() if i.isfile()]
                names = [i.name for i in infos]
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            self.close()
            raise ImageResolveError(f"archive {self.uri} is not a readable zip/tar file ({exc})") from None
        for name, info in zip(names, infos, strict=True):
            try:
                self._members[safe_relative_path(posixpath.normpath(name))] = info
            except ImageResolveError:
                continue  # members that escape the archive root are never served

    def __call__(self, path: str) -> bytes:
        relative = safe_relative_path(path)
        with self._lock:
            if self._file is None:
                self._open()
            info = self._members.get(relative)
            if info is None:
                raise ImageResolveError(f"image {path!r} not found in archive {self.uri}")
            try:
                if isinstance(info, zipfile.ZipInfo):
                    assert self._zip is not None
                    if info.file_size > MAX_IMAGE_BYTES:
                        raise ImageResolveError(
                            f"image {path!r} is {info.file_size} bytes; the limit is {MAX_IMAGE_BYTES}"
                        )
                    with self._zip.open(info) as stream:
                        return _read_limited(stream, info.file_size, path)
                assert self._tar is not None
                stream = self._tar.extractfile(info)
                if stream is None:
                    raise ImageResolveError(f"image {path!r} is not a regular file in {self.uri}")
                return _read_limited(stream, info.size, path)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
                raise ImageResolveError(f"image {path!r} in {self.uri} is corrupt ({exc})") from None

    def close(self) -> None:
        """Release the archive's file handle."""
        for handle in (self._zip, self._tar, self._file):
            if handle is not None:
                handle.close()
        self._zip = self._tar = self._file = None
        self._members = {}


def open_resolver(root: str, *, storage_options: dict[str, object] | None = None) -> ImageResolver:
    """An archive resolver when ``root`` ends like an archive, else a directory resolver."""
    if root.lower().endswith(ARCHIVE_SUFFIXES):
        return ArchiveResolver(root, storage_options=storage_options)
    return DirectoryResolver(root, storage_options=storage_options)
