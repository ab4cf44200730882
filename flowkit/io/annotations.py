"""Annotation files (SPEC section 10) and the window length k (SPEC section 2).

Three formats are read, all holding 1-based frame numbers that become 0-based, inclusive
:class:`Interval` objects in one place (:func:`_interval`):

- CAS(ME)^2 workbook (.xlsx). The first sheet has the columns subject, video, onset, apex, offset,
  AUs, emotion, type ('macro-expression' / 'micro-expression'), self-report, with or without a
  header row (a row whose onset cell is not a number is taken as a header and skipped). The
  video cell reads like ``anger1_1``: the part before the first '_' is the video name. The other
  sheets map names to the codes used by the ``rawpic/sNN/NN_<code><name>`` folders; the layout
  assumed is the one the released SOFTNet code reads:

  - a video sheet: column A the 4-digit video code ('0101', possibly stored as the number 101),
    column B the video name ('disgust1');
  - a subject sheet: column A (else B) the subject code (15 or 's15'), column C the subject number
    used on the first sheet (1); e.g. 1 -> 15, 2 -> 16, 3 -> 19, ..., 22 -> 40.

  Sheets are recognised by their content, not by position or name. The interval's video becomes
  ``<NN>_<code>`` (for example ``15_0101``) and its subject ``sNN``, matching what
  :func:`flowkit.io.sources.discover_videos` derives from ``rawpic/s15/15_0101disgustingteeth`` (see
  :func:`match_videos`). Without mapping sheets the video name and ``s<number>`` are used as they are.
- SAMM-LV workbook (.xlsx): some header rows, then the row 'Subject, Filename, Inducement Code,
  Onset, Apex, Offset, Duration, Type, Action Units, Notes'; the type is 'Macro' or 'Micro - 1/2'.
  Macro intervals with onset 0 are dropped (SPEC 10: 343 -> 333), with a warning giving the count.
- Generic CSV with a header: video, subject, onset, apex, offset, type ('macro' / 'micro').

An offset of 0 means "not annotated" and the apex is used instead (SPEC 6).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from flowkit.errors import FlowkitError

__all__ = ["Interval", "load_annotations", "derive_k", "k_by_type", "match_videos", "TYPES"]

TYPES = ("macro", "micro")


@dataclass(frozen=True)
class Interval:
    """One annotated expression: 0-based, inclusive frame indices; type "macro" or "micro"."""

    video: str
    subject: str
    onset: int
    apex: int
    offset: int
    type: str

    def to_attr(self) -> dict:
        """The store form: {"onset", "apex", "offset", "type"} (docs/store.md)."""
        d = asdict(self)
        return {key: d[key] for key in ("onset", "apex", "offset", "type")}


def _as_int(value) -> int | None:
    """A frame number from a cell: int, integral float or digit string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return int(float(text))
    return None


def _interval(where: str, video, subject, *, onset, apex, offset, kind: str) -> Interval:
    """Validate one row of 1-based numbers and convert it to a 0-based :class:`Interval`.

    The only place where 1-based becomes 0-based.
    """
    numbers = {}
    for name, value in (("onset", onset), ("apex", apex), ("offset", offset)):
        n = _as_int(value)
        if n is None:
            raise FlowkitError(f"{where}: {name} should be a whole frame number, got {value!r}")
        numbers[name] = n
    on, ap, off = numbers["onset"], numbers["apex"], numbers["offset"]
    if off == 0:
        off = ap  # SPEC 6: offset 0 means the offset was not annotated
    if on < 1:
        raise FlowkitError(f"{where}: onset should be a 1-based frame number >= 1, got {on}")
    if on > off:
        raise FlowkitError(f"{where}: onset should not come after offset, got onset {on} > offset {off}")
    if kind not in TYPES:
        raise FlowkitError(f"{where}: type should be macro or micro, got {kind!r}")
    video = str(video).strip() if video is not None else ""
    if not video:
        raise FlowkitError(f"{where}: video should be named, got an empty cell")
    subject = str(subject).strip() if subject is not None else ""
    ap0 = ap - 1 if ap >= 1 else on - 1
    return Interval(video, subject or video, on - 1, ap0, off - 1, kind)


def _norm(text) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(text).lower()) if text is not None else ""


def _type_of(value) -> str:
    """'macro-expression', 'Macro', 'Micro - 1/2', 'micro' -> "macro" / "micro"; else the raw text."""
    t = _norm(value)
    if t.startswith("macro"):
        return "macro"
    if t.startswith("micro"):
        return "micro"
    return str(value)


# --------------------------------------------------------------------- generic CSV
_CSV_COLUMNS = ("video", "subject", "onset", "apex", "offset", "type")


def _load_csv(path: Path) -> list[Interval]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise FlowkitError(f"annotation file {path} should have a header row, got an empty file")
        cols = {_norm(h): i for i, h in enumerate(header)}
        missing = [c for c in _CSV_COLUMNS if c not in cols]
        if missing:
            raise FlowkitError(
                f"annotation file {path} should have the columns {', '.join(_CSV_COLUMNS)}, "
                f"got {', '.join(h.strip() for h in header)} (missing {', '.join(missing)})"
            )
        out = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path} row {line}"
            if len(row) < len(header):
                raise FlowkitError(f"{where}: should have {len(header)} columns, got {len(row)}")
            get = lambda c: row[cols[c]]  # noqa: E731
            out.append(_interval(where, get("video"), get("subject"), onset=get("onset"), apex=get("apex"),
                                 offset=get("offset"), kind=_type_of(get("type")).strip().lower()))
        return out


# --------------------------------------------------------------------- workbooks
def _sheet_rows(sheet) -> list[tuple]:
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def _find_samm_header(rows: list[tuple]) -> int | None:
    for i, row in enumerate(rows[:30]):
        names = [_norm(c) for c in row]
        if "filename" in names and "onset" in names and "type" in names:
            return i
    return None


def _load_samm(path: Path, rows: list[tuple], header_at: int) -> list[Interval]:
    names = [_norm(c) for c in rows[header_at]]
    need = ("subject", "filename", "onset", "apex", "offset", "type")
    missing = [n for n in need if n not in names]
    if missing:
        raise FlowkitError(f"SAMM-LV workbook {path} header row {header_at + 1} should name {', '.join(need)}, "
                           f"missing {', '.join(missing)}")
    col = {n: names.index(n) for n in need}
    out, dropped = [], 0
    for i in range(header_at + 1, len(rows)):
        row = rows[i]
        if not any(c is not None and str(c).strip() for c in row):
            continue
        where = f"{path} row {i + 1}"
        cell = lambda n: row[col[n]] if col[n] < len(row) else None  # noqa: E731
        kind = _type_of(cell("type"))
        if kind == "macro" and _as_int(cell("onset")) == 0:
            dropped += 1
            continue
        subject = cell("subject")
        subject = f"{int(subject):03d}" if _as_int(subject) is not None else subject
        out.append(_interval(where, cell("filename"), subject, onset=cell("onset"), apex=cell("apex"),
                             offset=cell("offset"), kind=kind))
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} macro interval(s) with onset 0 (SPEC 10)", UserWarning,
                      stacklevel=3)
    return out


def _video_code(value) -> str | None:
    """'0101' or 101 -> '0101'; anything else -> None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = _as_int(value)
        return f"{n:04d}" if n is not None and 0 < n < 10000 else None
    text = str(value).strip() if value is not None else ""
    return text if re.fullmatch(r"\d{4}", text) else None


def _subject_code(value) -> str | None:
    """15, '15', 's15' -> '15'; anything else -> None."""
    text = str(value).strip().lower() if value is not None else ""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    m = re.fullmatch(r"s?(\d+)", text)
    return f"{int(m.group(1)):02d}" if m else None


def _cas_maps(sheets: list[list[tuple]]) -> tuple[dict[str, str], dict[int, str]]:
    """(video name -> 4-digit code, subject number -> 2-digit code) from the mapping sheets.

    A row with a 4-digit code in column A and a name in column B is a video row; otherwise a row
    whose column C is a whole number is a subject row (code in column A, else B).
    """
    videos: dict[str, str] = {}
    subjects: dict[int, str] = {}
    for rows in sheets:
        for row in rows:
            named = len(row) >= 2 and isinstance(row[1], str) and re.search(r"[a-z]", row[1], re.I)
            if named and _video_code(row[0]) and not _subject_code(row[1]):
                videos[_norm(row[1])] = _video_code(row[0])
            elif len(row) >= 3 and _as_int(row[2]) is not None:
                code = _subject_code(row[0]) or _subject_code(row[1])
                if code:
                    subjects[_as_int(row[2])] = code
    return videos, subjects


def _load_cas(path: Path, sheets: list[list[tuple]]) -> list[Interval]:
    videos, subjects = _cas_maps(sheets[1:])
    out = []
    for i, row in enumerate(sheets[0]):
        if not any(c is not None and str(c).strip() for c in row):
            continue
        where = f"{path} sheet 1 row {i + 1}"
        if len(row) < 8:
            raise FlowkitError(f"{where}: should have the 8+ CAS(ME)^2 columns (subject, video, onset, apex, offset, "
                               f"AUs, emotion, type), got {len(row)}")
        if _as_int(row[2]) is None and "onset" in _norm(row[2]):
            continue  # header row
        number = _as_int(row[0])
        name = str(row[1]).strip().split("_")[0] if row[1] is not None else ""
        if number is not None and number in subjects and _norm(name) in videos:
            code = subjects[number]
            video, subject = f"{code}_{videos[_norm(name)]}", f"s{code}"
        else:
            if subjects or videos:
                what = "subject" if number not in subjects else "video"
                raise FlowkitError(f"{where}: {what} {row[0] if what == 'subject' else name!r} should appear "
                                   "in the workbook's naming sheets, got no entry for it")
            code = _subject_code(row[0])
            video, subject = name, (f"s{code}" if code else str(row[0]))
        out.append(_interval(where, video, subject, onset=row[2], apex=row[3], offset=row[4], kind=_type_of(row[7])))
    return out


def _load_xlsx(path: Path) -> list[Interval]:
    try:
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for non-workbooks
        raise FlowkitError(f"annotation file {path} should be a readable .xlsx workbook, "
                           f"got {type(exc).__name__}: {exc}") from None
    try:
        sheets = [_sheet_rows(ws) for ws in wb.worksheets]
    finally:
        wb.close()
    if not sheets or not sheets[0]:
        raise FlowkitError(f"annotation workbook {path} should have rows on its first sheet, got none")
    header_at = _find_samm_header(sheets[0])
    if header_at is not None:
        return _load_samm(path, sheets[0], header_at)
    return _load_cas(path, sheets)


def load_annotations(path: str | os.PathLike) -> list[Interval]:
    """Read a CAS(ME)^2 or SAMM-LV workbook (.xlsx) or a generic CSV (see the module doc).

    Returns:
        list of :class:`Interval`, 0-based inclusive, in file order.

    Raises:
        FlowkitError: missing file, unknown extension, missing columns, or a bad row (the message
            names the file, the row and the problem).
    """
    p = Path(path)
    if not p.is_file():
        raise FlowkitError(f"annotation file should exist, got {str(p)!r} which does not")
    suffix = p.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _load_xlsx(p)
    if suffix in (".csv", ".txt"):
        return _load_csv(p)
    raise FlowkitError(f"annotation file should be .xlsx or .csv, got {str(p)!r}")


def derive_k(intervals: Iterable[Interval], type: str) -> int:  # noqa: A002 - SPEC's word
    """k = int((N + 1) / 2), N the mean of (offset - onset) over intervals of ``type`` (SPEC 2).

    >>> derive_k([Interval("v", "s", 0, 3, 10, "micro"), Interval("v", "s", 5, 6, 7, "micro")], "micro")
    3
    """
    if type not in TYPES:
        raise FlowkitError(f"expression type should be macro or micro, got {type!r}")
    lengths = [iv.offset - iv.onset for iv in intervals if iv.type == type]
    if not lengths:
        raise FlowkitError(f"annotations should hold at least one {type} interval to derive k, got none")
    n = sum(lengths) / len(lengths)
    return int((n + 1) / 2)


def k_by_type(intervals: Iterable[Interval]) -> dict[str, int]:
    """{type: derive_k} for each type present in ``intervals``."""
    intervals = list(intervals)
    return {t: derive_k(intervals, t) for t in TYPES if any(iv.type == t for iv in intervals)}


def match_videos(video_ids: Iterable[str],
                 intervals: Iterable[Interval]) -> tuple[dict[str, list[Interval]], list[str]]:
    """Assign intervals to store video ids.

    An annotation's video matches an id that equals it; failing that, an id in which it appears
    after the start or a '_' and is not followed by a digit (``15_0101`` matches
    ``s15_15_0101disgustingteeth``). An annotation video matching several ids by the second rule
    is ambiguous and counted as unknown.

    Returns:
        ({video_id: [intervals]}, sorted annotation video names that matched no id).
    """
    ids = list(video_ids)
    by_video: dict[str, list[Interval]] = {}
    for iv in intervals:
        by_video.setdefault(iv.video, []).append(iv)
    out: dict[str, list[Interval]] = {}
    unknown = []
    for name, ivs in by_video.items():
        if name in ids:
            target = name
        else:
            pattern = re.compile(r"(^|_)" + re.escape(name) + r"($|[^0-9])")
            hits = [v for v in ids if pattern.search(v)]
            if len(hits) != 1:
                unknown.append(name)
                continue
            target = hits[0]
        out.setdefault(target, []).extend(ivs)
    return out, sorted(unknown)
