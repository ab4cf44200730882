"""The store's layout, owned here: paths (:func:`k_group`), shapes, :data:`SCHEMA_VERSION`, the
codecs every array is written with, and the checks of a store's metadata before it is opened."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError

SCHEMA_VERSION = 1
DEFAULT_CHUNK_WINDOWS = 64
#: One window's features: channels u, v, strain over the 42x42 ROI image.
FEATURE_SHAPE = (3, 42, 42)
#: One window's flow: u, v over the 128x128 crop.
FLOW_SHAPE = (2, 128, 128)
VIDEOS = "videos"


def k_group(k: int) -> str:
    """Name of the group holding one k's arrays inside ``videos/<id>``.

    >>> k_group(18)
    'k18'
    """
    return f"k{int(k)}"


def _codecs() -> dict:
    """``create_array`` keywords of every array the store writes: zstd (zarr's default), then a
    crc32c checksum of the compressed bytes, checked on every read."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": (ZstdCodec(level=0), Crc32cCodec())}


def has_checksum(array) -> bool:
    """Whether a zarr v3 array's codec chain ends in a crc32c checksum."""
    return any(type(c).__name__ == "Crc32cCodec" for c in array.metadata.codecs)


def chunk_error(exc: BaseException) -> str:
    """What a codec error on reading a chunk means, in a few words."""
    text = " ".join(str(exc).split())
    if "checksum" in text.lower():
        return "checksum mismatch (the chunk was damaged after it was written)"
    return f"undecodable ({text[:80]})"


def param_diff(a: dict, b: dict) -> str:
    """The TV-L1 parameters on which two settings differ, as "name A against B".

    >>> param_diff({"nscales": 5, "warps": 5, "tau": 0.25}, {"nscales": 3, "warps": 5, "tau": 0.25})
    'nscales 5 against 3'
    """
    names = sorted(set(a) | set(b))
    return ", ".join(f"{n} {a.get(n, '-')} against {b.get(n, '-')}" for n in names if a.get(n) != b.get(n))


def _k_of(name: str) -> int | None:
    return int(name[1:]) if name[:1] == "k" and name[1:].isdigit() else None


def flowkit_version() -> str:
    try:
        from importlib.metadata import version

        return version("softnet-spotting")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"


def _json_safe(value):
    """Attrs are JSON: numpy scalars and tuples become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class StoreProblem:
    """One defect found by :meth:`FeatureReader.verify`: a chunk flagged written whose object is
    missing or does not decode."""

    video: str
    k: int
    chunk: int
    problem: str

    def __str__(self) -> str:
        return f"video {self.video} k={self.k} chunk {self.chunk}: {self.problem}"


def _metadata_files(root: Path) -> Iterator[Path]:
    """Every ``zarr.json`` of the layout: root, ``videos``, each video, its arrays and k groups, and
    theirs; chunk folders are not walked."""
    yield root / "zarr.json"
    yield root / VIDEOS / "zarr.json"
    folders = [root / VIDEOS]
    for _ in range(3):  # videos/<id>, then landmarks and k<k>, then features, written, flow
        folders = [Path(e.path) for f in folders if f.is_dir() for e in os.scandir(f)
                   if e.is_dir() and e.name != "c" and (Path(e.path) / "zarr.json").is_file()]
        yield from (f / "zarr.json" for f in sorted(folders))


def _corrupt_metadata(root: Path) -> Path | None:
    """The first ``zarr.json`` of the store's layout that is not valid JSON, if any."""
    for meta in _metadata_files(root):
        try:
            json.loads(meta.read_bytes())
        except (ValueError, OSError):
            return meta
    return None


def _check_schema(root, path: Path) -> None:
    schema = root.attrs.get("schema_version")
    if schema != SCHEMA_VERSION or VIDEOS not in root:
        raise FlowkitError(
            f"feature store {str(path)!r} should be a flowkit store of schema version {SCHEMA_VERSION}, "
            f"got schema_version {schema!r}"
        )
