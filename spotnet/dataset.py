"""Zarr-backed feature windows, LOSO folds and training-set construction (SPEC section 6).

The store is read only through :class:`flowkit.io.store.FeatureReader`, the layout's owner (plain
zarr, no lock, schema version checked). Windows are referenced by ``(video, window)`` index pairs,
never copied: :class:`WindowDataset` reads one chunk of ``features`` at a time and keeps the
last few chunks in a small cache, and :class:`ChunkShuffleSampler` orders a shuffled epoch
chunk by chunk so that each chunk is read about once per epoch. Memory therefore stays at a few
chunks whatever the store's size.

Reading of "drop int(max_class_count / 2) randomly chosen label-0 windows" (SPEC 6):
``max_class_count`` is the number of windows of the most frequent label value of the fold's
training windows (``np.unique(labels, return_counts=True)[1].max()``, as in the released code);
in a spotting dataset that is the label-0 count, so about half of the negatives are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from flowkit.errors import FlowkitError
from flowkit.io.store import FeatureReader, chunk_error
from spotnet.augment import COPIES, NONE, training_windows
from spotnet.errors import SpotnetError
from spotnet.labels import pseudo_labels
from spotnet.normalize import minmax_normalize

__all__ = [
    "ChunkShuffleSampler",
    "VideoWindows",
    "WindowDataset",
    "k_for_type",
    "list_videos",
    "loso_folds",
    "open_store",
    "store_ks",
    "training_index",
    "video_windows",
]


@dataclass(frozen=True)
class VideoWindows:
    """One video of a store at one k.

    intervals: 0-based inclusive ``(onset, offset, type)`` triples from the store annotations.
    """

    video: str
    subject: str
    k: int
    n_windows: int
    n_frames: int
    chunk: int
    intervals: tuple[tuple[int, int, str], ...] = field(default=())

    def spans(self, expression: str) -> list[tuple[int, int]]:
        """(onset, offset) pairs of one type ("macro" | "micro")."""
        return [(on, off) for on, off, kind in self.intervals if kind == expression]


def open_store(path: str | Path) -> FeatureReader:
    """Open a flowkit feature store read-only; SpotnetError when it is not one (or of another schema)."""
    try:
        return FeatureReader(path)
    except FlowkitError as exc:
        raise SpotnetError(str(exc)) from None


def _intervals(annotations: list[dict]) -> tuple[tuple[int, int, str], ...]:
    # The store already holds 0-based offsets with the SPEC 6 offset-0 -> apex rule applied and
    # types "macro" | "micro" (flowkit.io.annotations, docs/store.md); nothing to redo here.
    return tuple((int(a["onset"]), int(a["offset"]), str(a["type"])) for a in annotations)


def store_ks(path: str | Path) -> list[int]:
    """Every k with features in the store (complete or not), sorted."""
    return open_store(path).all_ks()


def k_for_type(path: str | Path, expression: str) -> int:
    """k of one expression type: root attrs ``k_by_type``, else the store's only k."""
    store = open_store(path)
    by_type = store.k_by_type()
    if expression in by_type:
        return by_type[expression]
    ks = store.all_ks()
    if len(ks) == 1:
        return ks[0]
    if not ks:
        raise SpotnetError(f"feature store {path} should hold features, got no k<k> group in any video")
    raise SpotnetError(
        f"feature store {path} should say which k belongs to {expression} (root attribute k_by_type), "
        f"got several k values {ks} and no k_by_type entry"
    )


def list_videos(path: str | Path, k: int, *, require_complete: bool = True, only=None) -> list[VideoWindows]:
    """The store's videos that have features at ``k``, sorted by video id (``only``: these ids).

    Raises:
        SpotnetError: a video lacks k, or its features are incomplete (interrupted extraction).
    """
    store = open_store(path)
    out = []
    for vid in store.videos():
        if only is not None and vid not in only:
            continue
        if k not in store.ks(vid):
            raise SpotnetError(
                f"video {vid} in {path} should have features for k={k}, got k values {store.ks(vid)}; "
                f"extract with --k {k}"
            )
        if require_complete and not store.is_complete(vid, k):
            lost = store.missing_chunks(vid, k)
            writer = None if lost else store.writer_pid()
            why = (f"chunk(s) {lost} lost (their files are gone)" if lost else "an interrupted extraction"
                   if writer is None else f"an extraction still writing it (pid {writer})")
            fix = "wait for it to end" if writer is not None else "run flowkit extract again to finish it"
            raise SpotnetError(f"features of video {vid} (k={k}) in {path} should be complete, got {why}; {fix}")
        attrs = store.video_attrs(vid)
        n_windows = int(store.features(vid, k).shape[0])
        out.append(VideoWindows(
            video=vid,
            subject=str(attrs.get("subject", vid)),
            k=int(k),
            n_windows=n_windows,
            n_frames=int(attrs.get("n_frames", n_windows + k)),
            chunk=store.chunk_windows(vid, k),
            intervals=_intervals(store.annotations(vid)),
        ))
    if not out:
        raise SpotnetError(f"feature store {path} should hold at least one video, got none")
    return out


def loso_folds(videos: Sequence[VideoWindows], expression: str) -> list[tuple[str, list[int], list[int]]]:
    """Leave-one-subject-out folds over the videos with at least one interval of ``expression``.

    Returns:
        ``(subject, train_video_indices, test_video_indices)`` per subject, subjects sorted.

    Raises:
        SpotnetError: no annotations, no interval of that type, or fewer than two subjects.
    """
    if not any(v.intervals for v in videos):
        raise SpotnetError(
            "feature store should carry annotations to train on, got none; "
            "no video of the store has an annotation row (check with flowkit annotations FILE --videos ROOT)"
        )
    used = [i for i, v in enumerate(videos) if v.spans(expression)]
    if not used:
        raise SpotnetError(f"annotations should contain {expression} intervals to train a {expression} model, got none")
    subjects = sorted({videos[i].subject for i in used})
    if len(subjects) < 2:
        raise SpotnetError(
            f"leave-one-subject-out needs at least two subjects with {expression} intervals, got only "
            f"{subjects[0]!r}; add videos of other subjects (or check the subject column of the annotations)"
        )
    return [
        (s, [i for i in used if videos[i].subject != s], [i for i in used if videos[i].subject == s])
        for s in subjects
    ]


def training_index(
    videos: Sequence[VideoWindows],
    train: Sequence[int],
    expression: str,
    *,
    rng: np.random.Generator,
    label_kind: str = "unit",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fold's training set as references: (index (N, 2) [video, window], labels (N,), codes (N,)).

    Steps (SPEC 6): pseudo-labels; drop ``int(max_class_count / 2)`` random label-0 windows;
    micro only: three augmented copies (flip, blur, noise codes) of every positive window;
    shuffle.
    """
    idx, lab = [], []
    for i in train:
        v = videos[i]
        labels = pseudo_labels(v.n_windows, v.k, v.spans(expression), kind=label_kind)
        idx.append(np.stack([np.full(v.n_windows, i), np.arange(v.n_windows)], axis=1))
        lab.append(labels)
    index = np.concatenate(idx).astype(np.int64)
    labels = np.concatenate(lab).astype(np.float32)
    _, counts = np.unique(labels, return_counts=True)
    n_drop = int(counts.max() / 2)
    zeros = np.flatnonzero(labels == 0)
    drop = rng.choice(zeros, size=min(n_drop, zeros.size), replace=False)
    keep = np.setdiff1d(np.arange(labels.size), drop)
    index, labels = index[keep], labels[keep]
    codes = np.full(labels.size, NONE, dtype=np.int8)
    if expression == "micro":
        pos = np.flatnonzero(labels > 0)
        index = np.concatenate([index] + [index[pos]] * len(COPIES))
        labels = np.concatenate([labels] + [labels[pos]] * len(COPIES))
        codes = np.concatenate([codes] + [np.full(pos.size, c, dtype=np.int8) for c in COPIES])
    order = rng.permutation(labels.size)
    return index[order], labels[order], codes[order]


class WindowDataset(Dataset):
    """Feature windows of a store, read chunk by chunk.

    Item ``i`` is ``(features (3, 42, 42) float32 tensor as the released generator gives it
    (:func:`spotnet.augment.training_windows`: normalised, augmented, normalised again),
    label float32 tensor)``.

    Args:
        store_path: the flowkit store.
        videos: the :class:`VideoWindows` the index refers to (all at the same k).
        index: (N, 2) int [video position in ``videos``, window].
        labels: (N,) float targets (zeros when None).
        codes: (N,) augmentation codes (spotnet.augment; NONE when None).
        seed: seed of the noise augmentation; item ``i`` always gets the same noise.
        cache_chunks: how many decoded chunks to keep.
    """

    def __init__(self, store_path, videos: Sequence[VideoWindows], index: np.ndarray, labels=None, codes=None,
                 *, seed: int = 0, cache_chunks: int = 8):
        self.store_path = Path(store_path)
        self.videos = list(videos)
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)
        n = len(self.index)
        self.labels = np.zeros(n, np.float32) if labels is None else np.asarray(labels, np.float32)
        self.codes = np.zeros(n, np.int8) if codes is None else np.asarray(codes, np.int8)
        self.seed = seed
        self.cache_chunks = cache_chunks
        self._store: FeatureReader | None = None  # opened on first read, then kept
        self._arrays: dict[int, object] = {}
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def _array(self, vi: int):
        if vi not in self._arrays:
            if self._store is None:
                self._store = open_store(self.store_path)
            v = self.videos[vi]
            self._arrays[vi] = self._store.features(v.video, v.k)
        return self._arrays[vi]

    def chunk_of(self, i: int) -> tuple[int, int]:
        vi, w = self.index[i]
        return int(vi), int(w) // self.videos[vi].chunk

    def _chunk(self, key: tuple[int, int]) -> np.ndarray:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        vi, c = key
        size = self.videos[vi].chunk
        data = _read_chunk(self._array(vi), self.videos[vi], c * size, (c + 1) * size)
        self._cache[key] = data
        if len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return data

    def window(self, i: int) -> np.ndarray:
        """Raw (3, 42, 42) float32 features of item ``i`` (no normalisation, no augmentation)."""
        vi, w = self.index[i]
        return self.chunk_window(int(vi), int(w))

    def chunk_window(self, vi: int, w: int) -> np.ndarray:
        """Raw (3, 42, 42) float32 features of window ``w`` of ``videos[vi]``, through the chunk cache."""
        size = self.videos[vi].chunk
        return self._chunk((vi, w // size))[w % size]

    def __getitem__(self, i: int):
        # training_windows returns a new tensor, so the cached chunk is never modified.
        x = training_windows(torch.from_numpy(self.window(i))[None], self.codes[i:i + 1], items=[i], seed=self.seed)
        return x[0], torch.tensor(self.labels[i])


class ChunkShuffleSampler(Sampler[int]):
    """Shuffled epochs that still read each chunk about once.

    Items are grouped by chunk; each epoch shuffles the order of the groups, then takes them
    ``mix`` at a time and shuffles the items of those groups together. A full shuffle (as in
    Keras) would read a chunk once per item; this one keeps the cache small.
    """

    def __init__(self, dataset: WindowDataset, *, seed: int = 0, mix: int = 4):
        self.dataset, self.seed, self.mix, self.epoch = dataset, seed, mix, 0
        keys = [dataset.chunk_of(i) for i in range(len(dataset))]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self.groups = [np.asarray(g, dtype=np.int64) for _, g in sorted(groups.items())]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.groups))
        for start in range(0, len(order), self.mix):
            block = np.concatenate([self.groups[g] for g in order[start:start + self.mix]])
            yield from (int(i) for i in rng.permutation(block))


def video_windows(store_path, video: VideoWindows, *, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """Every window of one video in order, as normalised (B, 3, 42, 42) batches, chunk by chunk."""
    arr = open_store(store_path).features(video.video, video.k)
    step = max(batch_size // video.chunk, 1) * video.chunk
    for start in range(0, video.n_windows, step):
        yield minmax_normalize(torch.from_numpy(_read_chunk(arr, video, start, start + step)))


def _read_chunk(arr, video: VideoWindows, start: int, stop: int) -> np.ndarray:
    """Windows [start, stop) as float32; a damaged chunk file becomes one SpotnetError naming it."""
    try:
        return np.asarray(arr[start:stop], dtype=np.float32)
    except Exception as exc:  # codec errors of a truncated or overwritten chunk file
        bad = _first_bad_chunk(arr, video, start, stop)
        raise SpotnetError(
            f"features of video {video.video} (k={video.k}) should be readable, got a damaged chunk "
            f"{bad} ({chunk_error(exc)}); run flowkit verify --repair, then extract"
        ) from None


def _first_bad_chunk(arr, video: VideoWindows, start: int, stop: int) -> int:
    """The first chunk of windows [start, stop) that does not read back (a read spans several)."""
    for j in range(start // video.chunk, -(-min(stop, video.n_windows) // video.chunk)):
        try:
            arr[j * video.chunk:(j + 1) * video.chunk]
        except Exception:  # noqa: BLE001 - any codec error marks the chunk
            return j
    return start // video.chunk
