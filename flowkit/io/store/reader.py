"""Reading a store (plain zarr, no lock): :class:`FeatureReader`, the only way spotnet reads one."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.store.layout import (
    VIDEOS,
    StoreProblem,
    _check_schema,
    _corrupt_metadata,
    _k_of,
    chunk_error,
    has_checksum,
    k_group,
    param_diff,
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
