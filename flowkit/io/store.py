"""The Zarr v3 feature store (docs/store.md, schema version 1): the contract with spotnet.

This module owns the layout: its paths (:func:`k_group`), shapes and :data:`SCHEMA_VERSION`
live here and nowhere else. :class:`FeatureReader` reads a store (plain zarr, no lock) and
refuses an unknown schema version; :class:`FeatureStore` adds the writer. spotnet reads only
through :class:`FeatureReader`.

A store has one driver at a time: a writer (``mode="a"``) holds an exclusive, non-blocking
``fcntl.flock`` on ``<store>/.lock`` until :meth:`FeatureStore.close`, and alone writes metadata.
Workers of that driver, in other processes or on other machines, write chunks through
:class:`ChunkWriter` without the lock: every chunk and every ``written`` flag is its own object.
Crash safety comes from the order of writes: a chunk's data, then its ``written`` flag, then
(when every flag is set) ``complete``, by the driver. zarr's local store replaces each object
file atomically, so a killed writer leaves either the old or the new version of a chunk, never
half of one.

Every array is written with zarr v3's ``crc32c`` codec after ``zstd``: a chunk damaged in place
(a flipped bit inside its compressed payload, which zstd alone may decode into wrong numbers)
fails to read instead of returning garbage. Stores written without it stay readable;
:meth:`FeatureReader.unchecksummed` lists their arrays and :meth:`FeatureStore.upgrade` rewrites
them. The layout is unchanged (the codec lives in each array's own metadata and every zarr v3
reader decodes it), so the schema version is too.

A store holds one TV-L1 setting: root attribute ``flow_params``, recorded by the first extract
and compared by every later one (:meth:`FeatureStore.claim_flow_params`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError

__all__ = [
    "DEFAULT_CHUNK_WINDOWS",
    "FEATURE_SHAPE",
    "FLOW_SHAPE",
    "SCHEMA_VERSION",
    "FeatureReader",
    "ChunkWriter",
    "FeatureStore",
    "StoreProblem",
    "flowkit_version",
    "chunk_error",
    "has_checksum",
    "param_diff",
    "k_group",
]

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


class FeatureReader:
    """Read a flowkit feature store: plain zarr, read-only, no lock (a writer may be running).

    Args:
        path: the ``.zarr`` directory.

    Raises:
        FlowkitError: the path is missing, a file, not a Zarr v3 store, or a store of another
            schema version than :data:`SCHEMA_VERSION`.

    Layout (docs/store.md): ``videos/<id>`` attrs and ``landmarks`` (68, 2) float32;
    ``videos/<id>/k<k>/features`` (n_windows, 3, 42, 42) float32 with dimension names
    (window, channel, y, x), ``written`` (n_chunks,) bool and optionally ``flow``
    (n_windows, 2, 128, 128) float32.
    """

    mode = "r"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._check_path()
        self._open_root("r")

    def _check_path(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FlowkitError(f"feature store should be a directory (.zarr), got {str(self.path)!r} which is a file")
        if not (self.path / "zarr.json").is_file():
            why = "no such folder" if not self.path.exists() else "not a Zarr store"
            raise FlowkitError(f"feature store should exist, got {str(self.path)!r} ({why})")

    def _open_root(self, mode: str) -> None:
        import zarr

        with self._reading():
            self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
        _check_schema(self.root, self.path)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn zarr's errors on a damaged store into one FlowkitError that names the bad file."""
        try:
            yield
        except FlowkitError:
            raise
        except Exception as exc:  # zarr raises many types for a broken store; all mean unreadable
            bad = _corrupt_metadata(self.path)
            if bad is not None:
                raise FlowkitError(f"feature store metadata {bad} should be valid JSON, got a corrupt file") from None
            raise FlowkitError(
                f"feature store {str(self.path)!r} should be a readable Zarr v3 store, got {' '.join(str(exc).split())}"
            ) from None

    def close(self) -> None:
        """Nothing to release for a reader (the writer subclass releases its lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ root
    @property
    def attrs(self) -> dict:
        return dict(self.root.attrs)

    def k_by_type(self) -> dict[str, int]:
        """Root attrs ``k_by_type`` ({"macro": 18, "micro": 6}), empty when none was derived."""
        return {str(t): int(k) for t, k in (self.root.attrs.get("k_by_type") or {}).items()}

    # ------------------------------------------------------------------ videos
    def _video(self, video_id: str):
        with self._reading():
            videos = self.root[VIDEOS]
            if video_id not in videos:
                raise FlowkitError(f"video should be in store {self.path}, got unknown {video_id!r}")
            return videos[video_id]

    def _kgroup(self, video_id: str, k: int):
        g = self._video(video_id)
        with self._reading():
            if k_group(k) not in g:
                raise FlowkitError(
                    f"video {video_id!r} in store {self.path} should have features for k={k}, got k values "
                    f"{self.ks(video_id)}; extract with --k {k}"
                )
            return g[k_group(k)]

    def videos(self) -> list[str]:
        """Video ids in the store, sorted."""
        with self._reading():
            return sorted(name for name, _ in self.root[VIDEOS].groups())

    def has_video(self, video_id: str) -> bool:
        with self._reading():
            return video_id in self.root[VIDEOS]

    def video_attrs(self, video_id: str) -> dict:
        return dict(self._video(video_id).attrs)

    def landmarks(self, video_id: str) -> np.ndarray:
        """(68, 2) float32 landmarks in 128x128 crop pixels."""
        return np.asarray(self._video(video_id)["landmarks"][...])

    def annotations(self, video_id: str) -> list[dict]:
        """0-based inclusive [{"onset", "apex", "offset", "type"}] of the video (may be empty)."""
        return list(self._video(video_id).attrs.get("annotations") or [])

    def ks(self, video_id: str) -> list[int]:
        """The k values that have a features group for this video, sorted."""
        g = self._video(video_id)
        with self._reading():
            names = [_k_of(name) for name, _ in g.groups()]
        return sorted(k for k in names if k is not None)

    def all_ks(self) -> list[int]:
        """Every k with features in any video (complete or not), sorted."""
        return sorted({k for vid in self.videos() for k in self.ks(vid)})

    # ------------------------------------------------------------------ features
    def k_attrs(self, video_id: str, k: int) -> dict:
        """Attrs of ``videos/<id>/k<k>``: k, flow_backend, flow_params, complete, n_windows, chunk."""
        return dict(self._kgroup(video_id, k).attrs)

    def is_complete(self, video_id: str, k: int) -> bool:
        """``complete`` is set and every chunk's object is there (a deleted chunk file undoes it)."""
        g = self._video(video_id)
        with self._reading():
            flagged = k_group(k) in g and bool(g[k_group(k)].attrs.get("complete", False))
        return flagged and not self.missing_chunks(video_id, k)

    def chunk_windows(self, video_id: str, k: int) -> int:
        """Windows per stored chunk of features (the read and resume unit)."""
        return int(self.features(video_id, k).chunks[0])

    def written(self, video_id: str, k: int) -> np.ndarray:
        """(n_chunks,) bool: which chunks of features are flagged as fully written."""
        kg = self._kgroup(video_id, k)
        with self._reading():
            return np.asarray(kg["written"][...], dtype=bool)

    def _data_arrays(self, video_id: str, k: int) -> list:
        kg = self._kgroup(video_id, k)
        with self._reading():
            return [kg[name] for name in ("features", "flow") if name in kg]

    def missing_chunks(self, video_id: str, k: int) -> list[int]:
        """Chunks flagged written whose data object (features or flow) is absent, e.g. deleted.

        A stat per chunk, no read: cheap enough to run on every resume and ``flowkit info``.
        """
        flagged = np.flatnonzero(self.written(video_id, k))
        folder = self.path / VIDEOS / video_id / k_group(k)
        missing = set()
        for arr in self._data_arrays(video_id, k):
            encode = arr.metadata.chunk_key_encoding.encode_chunk_key
            tail = (0,) * (arr.ndim - 1)
            name = arr.path.rsplit("/", 1)[-1]
            missing.update(int(j) for j in flagged if not (folder / name / encode((int(j), *tail))).is_file())
        return sorted(missing)

    def verify(self) -> list[StoreProblem]:
        """Read every flagged chunk of every video and k; the chunks that are missing or undecodable.

        Reads the whole store and changes nothing (``flowkit verify``).
        """
        problems = []
        for vid in self.videos():
            for k in self.ks(vid):
                missing = set(self.missing_chunks(vid, k))
                problems += [StoreProblem(vid, k, j, "missing") for j in sorted(missing)]
                for j in np.flatnonzero(self.written(vid, k)):
                    if int(j) not in missing:
                        problems += self._check_chunk(vid, k, int(j))
        return problems

    def _check_chunk(self, video_id: str, k: int, j: int) -> list[StoreProblem]:
        for arr in self._data_arrays(video_id, k):
            size = arr.chunks[0]
            try:
                data = np.asarray(arr[j * size:(j + 1) * size])
            except Exception as exc:  # codec errors: a checksum mismatch, a truncated or overwritten file
                return [StoreProblem(video_id, k, j, chunk_error(exc))]
            if not np.isfinite(data).all():
                return [StoreProblem(video_id, k, j, "holds NaN or infinite values")]
        return []

    def writer_pid(self) -> int | None:
        """The pid of the process writing this store now (holding its lock), or None.

        A probe: the lock is taken and released at once when free, so call it only to explain
        an incomplete store, not in a loop beside a starting writer.
        """
        lock = self.path / ".lock"
        if not lock.is_file():
            return None
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def unchecksummed(self) -> list[str]:
        """Paths (``videos/<id>/k<k>/features``, ...) of the arrays written without a crc32c
        checksum (by flowkit before it wrote them); ``flowkit verify --repair`` rewrites them."""
        out = []
        for vid in self.videos():
            g = self._video(vid)
            with self._reading():
                arrays = [("landmarks", g["landmarks"])] if "landmarks" in g else []
                for k in self.ks(vid):
                    kg = g[k_group(k)]
                    arrays += [(f"{k_group(k)}/{name}", kg[name]) for name in ("features", "written", "flow")
                               if name in kg]
            out += [f"{VIDEOS}/{vid}/{name}" for name, arr in arrays if not has_checksum(arr)]
        return out

    def flow_params(self) -> dict | None:
        """The store's one TV-L1 setting: root attr ``flow_params`` (every store extract writes
        records it), else, in a store written before it was recorded, the setting its k groups
        share; None for a store without features.

        Raises:
            FlowkitError: two (video, k) groups, or a group and the root, record different parameters.
        """
        root = self.root.attrs.get("flow_params")
        seen: dict[str, tuple[str, dict]] = {}
        if root is not None:
            seen[json.dumps(root, sort_keys=True)] = ("the store's root", dict(root))
        for vid in self.videos():
            for k in self.ks(vid):
                params = self.k_attrs(vid, k).get("flow_params")
                if params is not None:
                    seen.setdefault(json.dumps(params, sort_keys=True), (f"video {vid} k={k}", dict(params)))
        if len(seen) > 1:
            (a, pa), (b, pb) = list(seen.values())[:2]
            raise FlowkitError(f"store {self.path} should hold features of one TV-L1 setting, got {a} with "
                               f"{param_diff(pa, pb)} in {b}; extract each setting into its own store")
        return next(iter(seen.values()))[1] if seen else None

    def features(self, video_id: str, k: int):
        """The (n_windows, 3, 42, 42) float32 zarr array (index it to read)."""
        return self._kgroup(video_id, k)["features"]

    def flow(self, video_id: str, k: int):
        """The optional (n_windows, 2, 128, 128) float32 zarr array, or None."""
        kg = self._kgroup(video_id, k)
        return kg["flow"] if "flow" in kg else None

    def summary(self) -> dict:
        """A JSON-ready description for ``flowkit info``."""
        out = {"path": str(self.path), **{key: self.root.attrs.get(key) for key in
                                          ("schema_version", "flowkit_version", "k_by_type")},
               "flow_params": self.root.attrs.get("flow_params"), "unchecksummed_arrays": len(self.unchecksummed()),
               "videos": []}
        for vid in self.videos():
            a = self.video_attrs(vid)
            entry = {"video": vid, "subject": a.get("subject"), "n_frames": a.get("n_frames"), "fps": a.get("fps"),
                     "n_annotations": len(a.get("annotations") or []), "ks": []}
            for k in self.ks(vid):
                ka = self.k_attrs(vid, k)
                w = self.written(vid, k)
                missing = self.missing_chunks(vid, k)
                entry["ks"].append({"k": k, "n_windows": ka.get("n_windows"),
                                    "complete": bool(ka.get("complete")) and not missing,
                                    "chunks_written": int(w.sum()) - len(missing), "n_chunks": int(w.size),
                                    "missing_chunks": missing,
                                    "flow_backend": ka.get("flow_backend"), "flow_params": ka.get("flow_params")})
            out["videos"].append(entry)
        return out


class FeatureStore(FeatureReader):
    """Open (``mode="r"``) or create/append to (``mode="a"``) a flowkit feature store.

    Args:
        path: the ``.zarr`` directory.
        mode: "r" read-only, as :class:`FeatureReader`; "a" create when missing, otherwise open
            for writing, holding the store's lock until :meth:`close` (or the end of a ``with``
            block).

    Raises:
        FlowkitError: the path is a file, is not a flowkit store, or another process writes it.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        self._lock_fd: int | None = None
        if mode not in ("r", "a"):
            raise FlowkitError(f"store mode should be 'r' or 'a', got {mode!r}")
        self.mode = mode
        if mode == "r":
            super().__init__(path)
            return
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise FlowkitError(f"output store should be a directory (.zarr), got {str(self.path)!r} which is a file")
        if (not (self.path / "zarr.json").is_file() and self.path.exists()
                and any(p.name != ".lock" for p in self.path.iterdir())):
            raise FlowkitError(
                f"output store should be a new path or a flowkit store, got {str(self.path)!r}: a non-empty folder "
                "that is not a Zarr store"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlowkitError(
                f"output store {str(self.path)!r} should be creatable, got {exc.strerror or exc}"
            ) from None
        self._acquire_lock()
        try:
            # Checked under the lock: another writer may have created the store meanwhile.
            if (self.path / "zarr.json").is_file():
                self._open_root("a")
                bad = _corrupt_metadata(self.path)  # now, as bad input, not later as a failing video
                if bad is not None:
                    raise FlowkitError(f"feature store metadata {bad} should be valid JSON, got a corrupt file")
            else:
                self._create_root()
        except BaseException:
            self.close()
            raise

    def _create_root(self) -> None:
        import zarr

        self.root = zarr.open_group(str(self.path), mode="a", zarr_format=3)
        self.root.attrs.update({"schema_version": SCHEMA_VERSION, "flowkit_version": flowkit_version()})
        self.root.require_group(VIDEOS)

    # ------------------------------------------------------------------ lock
    def _acquire_lock(self) -> None:
        lock = self.path / ".lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise FlowkitError(f"store {self.path} is being written by another process (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the writer's lock (the lock file stays; its lock is what counts)."""
        if getattr(self, "_lock_fd", None) is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __del__(self):
        self.close()

    def _writable(self) -> None:
        if self.mode != "a" or self._lock_fd is None:
            raise FlowkitError(f"store {self.path} should be opened with mode='a' to write, got mode {self.mode!r}")

    # ------------------------------------------------------------------ writes
    def set_root_attrs(self, **attrs) -> None:
        self._writable()
        self.root.attrs.update(_json_safe(attrs))

    def claim_flow_params(self, params: dict) -> None:
        """Record ``params`` as the store's TV-L1 setting, or refuse a run whose setting differs
        from the one already recorded (before any video is touched).

        Raises:
            FlowkitError: the store holds features of other parameters, or of several.
        """
        self._writable()
        params = _json_safe(dict(params))
        current = self.flow_params()
        if current is not None and current != params:
            raise FlowkitError(
                f"TV-L1 parameters should match those of store {self.path}, got {param_diff(current, params)} "
                "(the store's against this run's; --fast changes them); extract into a new store to use others"
            )
        if self.root.attrs.get("flow_params") != params:
            self.root.attrs["flow_params"] = params

    def upgrade(self) -> list[StoreProblem]:
        """Rewrite every array written without a checksum with one (:func:`_codecs`), chunk by
        chunk, and record the store's TV-L1 setting at the root when its videos share one.

        A chunk that does not read back is written as zeros and its flag cleared, so that extract
        recomputes it; those chunks are returned.
        """
        self._writable()
        problems: list[StoreProblem] = []
        for path in self.unchecksummed():
            _, vid, *rest = path.split("/")
            parent = self._video(vid) if len(rest) == 1 else self._kgroup(vid, int(rest[0][1:]))
            bad = _rewrite_with_checksum(parent, rest[-1])
            if bad and len(rest) == 1:
                raise FlowkitError(f"landmarks of video {vid} in {self.path} should read back, got a damaged "
                                   "array; extract that video into a new store")
            if bad:
                k = int(rest[0][1:])
                problems += [StoreProblem(vid, k, j, "did not read back while adding its checksum") for j in bad]
                self.unflag_chunks(vid, k, bad)
        try:
            params = self.flow_params()
        except FlowkitError:  # several settings: nothing to record, train and extract refuse the store
            params = None
        if params is not None:
            self.root.attrs["flow_params"] = params
        return problems

    def add_video(self, video_id: str, attrs: dict, landmarks) -> None:
        """Create (or update) ``videos/<video_id>`` with its attrs and (68, 2) landmarks.

        attrs: subject, source, n_frames, fps, crop_box [x0, y0, x1, y1], reference_frame,
        landmark_backend, annotations (see docs/store.md).
        """
        self._writable()
        if not video_id or "/" in video_id or video_id.startswith("."):
            raise FlowkitError(f"video id should be a group name without '/', got {video_id!r}")
        points = np.asarray(landmarks, dtype=np.float32)
        if points.shape != (68, 2):
            raise FlowkitError(f"landmarks should have shape (68, 2), got {points.shape}")
        g = self.root["videos"].require_group(video_id)
        if "landmarks" in g and g["landmarks"].shape == (68, 2):
            g["landmarks"][...] = points
        else:
            arr = g.create_array("landmarks", shape=(68, 2), dtype="float32", chunks=(68, 2),
                                 dimension_names=("point", "xy"), overwrite=True, **_codecs())
            arr[...] = points
        # Attrs last: extract takes a stored crop_box to mean the video is prepared, landmarks included.
        g.attrs.update(_json_safe(attrs))

    def set_video_attrs(self, video_id: str, **attrs) -> None:
        self._writable()
        self._video(video_id).attrs.update(_json_safe(attrs))

    def create_features(self, video_id: str, k: int, n_windows: int, flow_backend: str, flow_params: dict, *,
                        chunk: int = DEFAULT_CHUNK_WINDOWS, save_flow: bool = False) -> None:
        """Create ``videos/<id>/k<k>`` (features, written, optionally flow), or keep an existing
        one that matches, so that a rerun resumes it.

        Raises:
            FlowkitError: an existing group was made with other TV-L1 parameters, backend,
                window count or chunking (resuming would mix two computations).
        """
        self._writable()
        if n_windows < 1:
            raise FlowkitError(f"n_windows should be >= 1, got {n_windows}")
        g = self._video(video_id)
        name = k_group(k)
        params = _json_safe(dict(flow_params))
        old = dict(g[name].attrs) if name in g else {}
        # The attrs are written last, so a group without them was cut off while being created
        # (nothing can have been written to it) and is made again below.
        if "n_windows" in old:
            mismatch = [
                f"{what} ({a} in the store against {b})" for what, a, b in (
                    ("TV-L1 parameters (--fast)", old.get("flow_params"), params),
                    ("flow backend (--flow-backend, --device, --gpu)", old.get("flow_backend"), flow_backend),
                    ("window count", old.get("n_windows"), n_windows),
                    ("--chunk-windows", old.get("chunk"), chunk),
                ) if a != b
            ]
            if save_flow and "flow" not in g[name]:
                mismatch.append("--save-flow (no flow in the store)")
            if not mismatch:
                _one_object_per_flag(g[name])
                self.unflag_chunks(video_id, k, self.missing_chunks(video_id, k))
                return
            raise FlowkitError(
                f"store {self.path} already holds video {video_id!r} k={k} made with a different "
                f"{'; '.join(mismatch)}; rerun with the store's settings, or write to a new store"
            )
        kg = g.create_group(name, overwrite=True)
        n_chunks = math.ceil(n_windows / chunk)
        # Every chunk gets an object, even an all-zero one, so that a missing object means a lost chunk.
        every_chunk = {"write_empty_chunks": True}
        kg.create_array("features", shape=(n_windows, *FEATURE_SHAPE), chunks=(chunk, *FEATURE_SHAPE),
                        dtype="float32", fill_value=0.0, dimension_names=("window", "channel", "y", "x"),
                        config=every_chunk, **_codecs())
        # One object per flag, so that writers of different chunks never rewrite the same file.
        kg.create_array("written", shape=(n_chunks,), chunks=(1,), dtype="bool", fill_value=False,
                        dimension_names=("chunk",), **_codecs())
        if save_flow:
            kg.create_array("flow", shape=(n_windows, *FLOW_SHAPE), chunks=(chunk, *FLOW_SHAPE),
                            dtype="float32", fill_value=0.0, dimension_names=("window", "component", "y", "x"),
                            config=every_chunk, **_codecs())
        kg.attrs.update({"k": int(k), "flow_backend": flow_backend, "flow_params": params, "complete": False,
                         "n_windows": int(n_windows), "chunk": int(chunk)})

    def write_chunk(self, video_id: str, k: int, chunk_index: int, features, flow=None) -> None:
        """Write windows [chunk_index * chunk, ...) of features (and flow), then flag the chunk.

        features: (n, 3, 42, 42) float32, n the chunk's window count (the last may be short).
        flow: (n, 2, 128, 128) float32, required when the group was made with ``save_flow``.
        """
        self._writable()
        _write_chunk(self._kgroup(video_id, k), chunk_index, features, flow)

    def resize_windows(self, video_id: str, k: int, n_windows: int) -> None:
        """Change a k group's window count (the video turned out to have another frame count):
        features, flow and flags are cut or extended."""
        self._writable()
        kg = self._kgroup(video_id, k)
        old, chunk = int(kg.attrs["n_windows"]), int(kg.attrs["chunk"])
        if n_windows < 1:
            raise FlowkitError(f"n_windows should be >= 1, got {n_windows}")
        if n_windows == old:
            return
        kg.attrs.update({"complete": False})
        for name in ("features", "flow"):
            if name in kg:
                kg[name].resize((n_windows, *kg[name].shape[1:]))
        kg["written"].resize((math.ceil(n_windows / chunk),))
        if n_windows > old:  # the old last chunk was short: it needs its new windows
            kg["written"][(old - 1) // chunk] = False
        # Shrinking keeps every flag: window i's features do not depend on the frame count, and
        # zarr drops the chunks past the new end.
        kg.attrs.update({"n_windows": int(n_windows)})

    def drop_k(self, video_id: str, k: int) -> None:
        """Remove ``videos/<id>/k<k>`` (the video turned out too short for k)."""
        self._writable()
        g = self._video(video_id)
        if k_group(k) in g:
            del g[k_group(k)]

    def unflag_chunks(self, video_id: str, k: int, chunks) -> None:
        """Clear the ``written`` flags of ``chunks`` (and ``complete``), so that extract recomputes them."""
        self._writable()
        chunks = [int(j) for j in chunks]
        if not chunks:
            return
        kg = self._kgroup(video_id, k)
        kg.attrs["complete"] = False
        for j in chunks:
            kg["written"][j] = False

    def mark_complete(self, video_id: str, k: int) -> bool:
        """Set ``complete`` when every chunk is flagged and its object exists; returns whether it is complete."""
        self._writable()
        kg = self._kgroup(video_id, k)
        done = bool(np.all(kg["written"][...])) and not self.missing_chunks(video_id, k)
        if done:
            kg.attrs["complete"] = True
        return done


def _one_object_per_flag(kg) -> None:
    """Rewrite a ``written`` array kept in one object (stores made before flowkit 0.3) as one
    object per flag, so that concurrent writers can resume it."""
    flags = kg["written"]
    if flags.chunks == (1,):
        return
    values = np.asarray(flags[...], dtype=bool)
    new = kg.create_array("written", shape=values.shape, chunks=(1,), dtype="bool", fill_value=False,
                          dimension_names=("chunk",), overwrite=True, **_codecs())
    new[...] = values


def _rewrite_with_checksum(group, name: str) -> list[int]:
    """Copy ``group[name]`` into an array of the same shape, chunks, attrs and fill value with the
    checksummed codecs, then swap the two folders. Returns the chunk indices (along the first
    axis) that did not read back; they are written as the fill value."""
    import shutil

    import zarr

    old = group[name]
    every_chunk = {"write_empty_chunks": True}
    new = group.create_array(f"{name}-checksummed", shape=old.shape, chunks=old.chunks, dtype=old.dtype,
                             fill_value=old.fill_value, dimension_names=old.metadata.dimension_names,
                             attributes=dict(old.attrs), overwrite=True, config=every_chunk, **_codecs())
    size, bad = old.chunks[0], []
    for j in range(math.ceil(old.shape[0] / size) if old.shape else 1):
        try:
            new[j * size:(j + 1) * size] = old[j * size:(j + 1) * size]
        except Exception:  # noqa: BLE001 - a codec error: the chunk is lost, recomputed by extract
            bad.append(j)
    folder = Path(group.store.root) / group.path
    shutil.rmtree(folder / name)
    os.replace(folder / f"{name}-checksummed", folder / name)
    zarr.open_array(str(folder / name), mode="r")  # the swapped array opens
    return bad


def _write_chunk(kg, chunk_index: int, features, flow=None, n_windows: int | None = None) -> None:
    """Chunk ``chunk_index`` of the k group ``kg``: data first, then its flag (a crash between the
    two leaves the chunk to be recomputed). ``n_windows`` caps the group's window count when the
    video turned out shorter than planned (the driver then cuts the arrays to it)."""
    chunk = int(kg.attrs["chunk"])
    total = int(kg.attrs["n_windows"]) if n_windows is None else min(n_windows, int(kg.attrs["n_windows"]))
    start = chunk_index * chunk
    stop = min(start + chunk, total)
    if not 0 <= start < total:
        raise FlowkitError(f"chunk index should be in [0, {math.ceil(total / chunk)}), got {chunk_index}")
    feats = np.asarray(features, dtype=np.float32)
    if feats.shape != (stop - start, *FEATURE_SHAPE):
        raise FlowkitError(f"chunk {chunk_index} features should have shape {(stop - start, *FEATURE_SHAPE)}, "
                           f"got {feats.shape}")
    has_flow = "flow" in kg
    if has_flow:
        if flow is None:
            raise FlowkitError(f"chunk {chunk_index} should come with its flow (store made with save_flow)")
        flow = np.asarray(flow, dtype=np.float32)
        if flow.shape != (stop - start, *FLOW_SHAPE):
            raise FlowkitError(f"chunk {chunk_index} flow should have shape {(stop - start, *FLOW_SHAPE)}, "
                               f"got {flow.shape}")
    # Every chunk gets its object, even one equal to the fill value (a perfectly still video has
    # zero features): the config is not stored with the array, so each writer asks for it.
    every_chunk = {"write_empty_chunks": True}
    kg["features"].with_config(every_chunk)[start:stop] = feats
    if has_flow:
        kg["flow"].with_config(every_chunk)[start:stop] = flow
    kg["written"][chunk_index] = True


class ChunkWriter:
    """Writes whole chunks of existing k groups, from any process or machine, without a lock.

    The driver (:class:`FeatureStore`, which holds the store's lock) creates the groups and alone
    writes metadata and ``complete``; workers write chunk data and flags through this. Each chunk
    and each flag is its own object, replaced atomically, so writers of different chunks never
    touch the same file, and a chunk written twice (a rerun task) holds the same bytes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._groups: dict[tuple[str, int], object] = {}

    def write_chunk(self, video_id: str, k: int, chunk_index: int, features, flow=None, *,
                    n_windows: int | None = None) -> None:
        """As :meth:`FeatureStore.write_chunk`; ``n_windows`` as in a video found shorter than planned."""
        key = (video_id, k)
        if key not in self._groups:
            import zarr

            self._groups[key] = zarr.open_group(str(self.path / VIDEOS / video_id / k_group(k)), mode="r+",
                                                zarr_format=3)
        _write_chunk(self._groups[key], chunk_index, features, flow, n_windows)
