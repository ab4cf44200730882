"""Writing a store: :class:`FeatureStore` (the driver, under the store's lock, alone writes
metadata) and :class:`ChunkWriter` (workers anywhere, whole chunks and their flags, no lock)."""

from __future__ import annotations

import fcntl
import math
import os
from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.store.layout import (
    DEFAULT_CHUNK_WINDOWS,
    FEATURE_SHAPE,
    FLOW_SHAPE,
    SCHEMA_VERSION,
    VIDEOS,
    StoreProblem,
    _codecs,
    _corrupt_metadata,
    _json_safe,
    flowkit_version,
    k_group,
    param_diff,
)
from flowkit.io.store.reader import FeatureReader


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
