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

from flowkit.io.store.layout import (
    DEFAULT_CHUNK_WINDOWS,
    FEATURE_SHAPE,
    FLOW_SHAPE,
    SCHEMA_VERSION,
    StoreProblem,
    chunk_error,
    flowkit_version,
    has_checksum,
    k_group,
    param_diff,
)
from flowkit.io.store.reader import FeatureReader
from flowkit.io.store.writer import ChunkWriter, FeatureStore

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
