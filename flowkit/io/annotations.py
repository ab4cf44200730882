"""Annotation files (SPEC section 10) and the window length k (SPEC section 2).

Three formats are read, all holding 1-based frame numbers that become 0-based, inclusive
:class:`Interval` objects in one place (:func:`_interval`), the way the released SOFTNet code
converts them (``load_label.py``: ``int(x - 1)``):

- CAS(ME)^2 workbook (.xlsx), as distributed: sheet ``CASFEcode_final`` without a header, the
  columns subject number, video (``anger1_1``: the part before the first '_' is the video
  name), onset, apex, offset, AUs, emotion, type ('macro-expression' / 'micro-expression'),
  self-report; a header row, when there is one, is skipped. The two naming sheets map names to
  the codes of the ``rawpic/sNN/NN_<code><name>`` folders:

  - ``naming rule2`` (videos): column A the 4-digit video code ('0101', stored as text, or the
    number 101), column B the video name ('disgust1');
  - ``naming rule1`` (subjects): column B the subject folder ('s15'; the released code reads this
    column), column A the code (15), column C the subject number of the first sheet (1).

  Sheets are recognised by their content, not by position or name. The interval's video becomes
  ``<NN>_<code>`` (for example ``15_0101``) and its subject ``sNN``, matching what
  :func:`flowkit.io.sources.discover_videos` derives from ``rawpic/s15/15_0101disgustingteeth`` (see
  :func:`match_videos`). Without naming sheets the video name and ``s<number>`` are used as they are.
- SAMM-LV workbook (.xlsx): preamble rows, then the row 'Subject, Filename, Inducement Code,
  Onset, Apex, Offset, Duration, Type, Action Units, Notes' (found by its content); the type is
  'Macro' or 'Micro - 1/2'. As in the released code, the video is the first two '_' fields of
  Filename (``011_6_10`` -> ``011_6``, the frame folder) and the subject the first one; macro
  intervals with onset 0 are dropped (SPEC 10: 343 -> 333); fractional frame numbers (566.4) are
  truncated with ``int(x - 1)`` (566.4 -> frame 565, 0-based).
- Generic CSV with a header: video, subject, onset, apex, offset, type ('macro' / 'micro').

An offset of 0 means "not annotated" and the apex is used instead (SPEC 6). An apex below 1
(SAMM-LV's -1, CAS(ME)^2's 0) means "not annotated" too: the interval's apex is None.

Refused, with the rows named: a row that cannot be right (not a number, onset below 1, onset after
offset, unknown type, no video), a row repeated exactly, a video given two subjects, and a file
without rows. Reported (:class:`AnnotationFile`, and one warning line each from
:func:`load_annotations`): dropped rows, truncated frame numbers, an apex outside its interval.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from flowkit.errors import FlowkitError

__all__ = ["Interval", "AnnotationFile", "RowNote", "load_annotations", "read_annotations", "derive_k", "k_by_type",
           "match_videos", "annotation_summary", "format_summary", "TYPES"]

TYPES = ("macro", "micro")


@dataclass(frozen=True)
class Interval:
    """One annotated expression: 0-based, inclusive frame indices; type "macro" or "micro";
    apex None when the file marks it as not annotated."""

    video: str
    subject: str
    onset: int
    apex: int | None
    offset: int
    type: str

    def to_attr(self) -> dict:
        """The store form: {"onset", "apex", "offset", "type"} (docs/store.md)."""
        d = asdict(self)
        return {key: d[key] for key in ("onset", "apex", "offset", "type")}


@dataclass(frozen=True)
class RowNote:
    """Something done to one row of an annotation file: where (file and row) and what."""

    where: str
    what: str


@dataclass
class AnnotationFile:
    """What :func:`read_annotations` found in one file.

    format: "CAS(ME)^2 workbook", "SAMM-LV workbook" or "CSV".
    intervals: the kept rows, in file order.
    dropped: rows left out on purpose (SAMM-LV macro rows with onset 0), with the reason.
    truncated: fractional frame numbers converted with ``int(x - 1)``.
    apex_outside: rows whose apex lies outside onset..offset (kept).
    apex_missing: rows whose apex is marked as not annotated.
    """

    path: Path
    format: str
    intervals: list[Interval] = field(default_factory=list)
    dropped: list[RowNote] = field(default_factory=list)
    truncated: list[RowNote] = field(default_factory=list)
    apex_outside: list[RowNote] = field(default_factory=list)
    apex_missing: int = 0

    def warnings(self) -> list[str]:
        """One line per kind of note, naming the first rows."""
        out = []
        if self.dropped:
            out.append(f"{self.path}: dropped {len(self.dropped)} macro interval(s) with onset 0, as the released "
                       f"code does (SPEC 10): {_rows(self.dropped)}")
        if self.truncated:
            out.append(f"{self.path}: {len(self.truncated)} fractional frame number(s) truncated with int(x - 1), as "
                       f"the released code does: {_rows(self.truncated, what=True)}")
        if self.apex_outside:
            out.append(f"{self.path}: {len(self.apex_outside)} row(s) with the apex outside onset..offset, kept: "
                       f"{_rows(self.apex_outside, what=True)}")
        return out


def _rows(notes: list[RowNote], *, what: bool = False, first: int = 5) -> str:
    shown = [_short(n.where) + (f" ({n.what})" if what else "") for n in notes[:first]]
    return ", ".join(shown) + (f" and {len(notes) - first} more" if len(notes) > first else "")


def _number(value) -> float | None:
    """A frame number from a cell: int, float or numeric string; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
        return float(text)
    return None


def _as_int(value) -> int | None:
    """A whole number from a cell (int, integral float or digit string); None otherwise."""
    n = _number(value)
    return int(n) if n is not None and n.is_integer() else None


def _zero_based(value: float) -> int:
    """The released code's conversion of a 1-based frame number: ``int(x - 1)`` (truncation)."""
    return int(value - 1)


def _interval(where: str, video, subject, *, onset, apex, offset, kind: str, found: AnnotationFile) -> Interval:
    """Validate one row of 1-based numbers and convert it to a 0-based :class:`Interval`.

    The only place where 1-based becomes 0-based; notes (truncation, apex) go to ``found``.
    """
    numbers = {}
    for name, value in (("onset", onset), ("offset", offset)):
        n = _number(value)
        if n is None:
            raise FlowkitError(f"{where}: {name} should be a frame number, got {value!r}")
        numbers[name] = n
    ap = _number(apex)
    if apex is not None and str(apex).strip() and ap is None:
        raise FlowkitError(f"{where}: apex should be a frame number, got {apex!r}")
    on, off = numbers["onset"], numbers["offset"]
    if off == 0:  # SPEC 6: offset 0 means the offset was not annotated
        if ap is None or ap < 1:
            raise FlowkitError(f"{where}: with offset 0 (not annotated) the apex should be a frame number >= 1, "
                               f"got {apex!r}")
        off = ap
    if on < 1:
        raise FlowkitError(f"{where}: onset should be a 1-based frame number >= 1, got {onset!r}")
    if on > off:
        raise FlowkitError(f"{where}: onset should not come after offset, got onset {on:g} > offset {off:g}")
    if kind not in TYPES:
        raise FlowkitError(f"{where}: type should be macro or micro, got {kind!r}")
    video = str(video).strip() if video is not None else ""
    if not video:
        raise FlowkitError(f"{where}: video should be named, got an empty cell")
    subject = str(subject).strip() if subject is not None else ""
    on0, off0 = _zero_based(on), _zero_based(off)
    return Interval(video, subject or video, on0, _apex(where, found, on, ap, off), off0, kind)


def _apex(where: str, found: AnnotationFile, on: float, ap: float | None, off: float) -> int | None:
    """The 0-based apex (None when not annotated); notes truncated values and an apex outside the interval."""
    for name, value in (("onset", on), ("apex", ap), ("offset", off)):
        if value is not None and value >= 1 and not value.is_integer():
            found.truncated.append(RowNote(where, f"{name} {value!r} -> {_zero_based(value) + 1} (1-based)"))
    if ap is None or ap < 1:
        found.apex_missing += 1
        return None
    if not _zero_based(on) <= _zero_based(ap) <= _zero_based(off):
        found.apex_outside.append(RowNote(where, f"apex {ap:g} outside {on:g}..{off:g}"))
    return _zero_based(ap)


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


def _check_rows(path: Path, rows: list[tuple[str, tuple, Interval]]) -> None:
    """Refuse an empty file, a row repeated exactly and a video with two subjects, naming the rows."""
    if not rows:
        raise FlowkitError(f"annotation file {path} should hold at least one annotation row, got none")
    seen: dict[tuple, str] = {}
    subject_of: dict[str, tuple[str, str]] = {}
    for where, key, iv in rows:
        if key in seen:
            raise FlowkitError(f"annotation rows should not repeat, got {_short(where)} identical to "
                               f"{_short(seen[key])} in {path}")
        seen[key] = where
        first = subject_of.setdefault(iv.video, (iv.subject, where))
        if first[0] != iv.subject:
            raise FlowkitError(f"a video should have one subject, got video {iv.video} with subject {first[0]!r} "
                               f"({_short(first[1])}) and {iv.subject!r} ({_short(where)}) in {path}")


def _short(where: str) -> str:
    """'/x/a.xlsx sheet 1 row 12' -> 'sheet 1 row 12'."""
    m = re.search(r"((sheet \d+ )?row \d+)$", where)
    return m.group(1) if m else where


def _key(row) -> tuple:
    return tuple("" if c is None else str(c).strip() for c in row)


# --------------------------------------------------------------------- generic CSV
_CSV_COLUMNS = ("video", "subject", "onset", "apex", "offset", "type")


def _load_csv(path: Path, found: AnnotationFile) -> list[tuple[str, tuple, Interval]]:
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
            iv = _interval(where, get("video"), get("subject"), onset=get("onset"), apex=get("apex"),
                           offset=get("offset"), kind=_type_of(get("type")).strip().lower(), found=found)
            out.append((where, _key(row), iv))
        return out


# --------------------------------------------------------------------- workbooks
def _sheet_rows(sheet) -> list[tuple]:
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def _blank(row) -> bool:
    return not any(c is not None and str(c).strip() for c in row)


def _find_samm_header(rows: list[tuple]) -> int | None:
    for i, row in enumerate(rows[:30]):
        names = [_norm(c) for c in row]
        if "filename" in names and "onset" in names and "type" in names:
            return i
    return None


def _samm_video(filename) -> tuple[str, str]:
    """(video, subject) of a Filename cell, as the released code splits it: '011_6_10' -> ('011_6', '011')."""
    parts = str(filename).strip().split("_") if filename is not None else [""]
    return "_".join(parts[:2]), parts[0]


def _load_samm(path: Path, rows: list[tuple], header_at: int, found: AnnotationFile) -> list:
    names = [_norm(c) for c in rows[header_at]]
    need = ("filename", "onset", "apex", "offset", "type")
    missing = [n for n in need if n not in names]
    if missing:
        raise FlowkitError(f"SAMM-LV workbook {path} header row {header_at + 1} should name {', '.join(need)}, "
                           f"missing {', '.join(missing)}")
    col = {n: names.index(n) for n in need}
    out = []
    for i in range(header_at + 1, len(rows)):
        row = rows[i]
        if _blank(row):
            continue
        where = f"{path} row {i + 1}"
        cell = lambda n: row[col[n]] if col[n] < len(row) else None  # noqa: E731
        kind = _type_of(cell("type"))
        onset, offset = _number(cell("onset")), _number(cell("offset"))
        # The released code keeps an offset-0 row (apex as offset) before it drops macro onset 0.
        if kind == "macro" and onset is not None and int(onset) == 0 and offset != 0:
            found.dropped.append(RowNote(where, "macro interval with onset 0"))
            continue
        video, subject = _samm_video(cell("filename"))
        iv = _interval(where, video, subject, onset=cell("onset"), apex=cell("apex"), offset=cell("offset"),
                       kind=kind, found=found)
        out.append((where, _key(row), iv))
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
    """(video name -> 4-digit code, subject number -> 2-digit code) from the naming sheets.

    A row with a 4-digit code in column A and a name in column B is a video row; otherwise a row
    whose column C is a whole number is a subject row (code in column B as the released code
    reads it, else A).
    """
    videos: dict[str, str] = {}
    subjects: dict[int, str] = {}
    for rows in sheets:
        for row in rows:
            named = len(row) >= 2 and isinstance(row[1], str) and re.search(r"[a-z]", row[1], re.I)
            if named and _video_code(row[0]) and not _subject_code(row[1]):
                videos[_norm(row[1])] = _video_code(row[0])
            elif len(row) >= 3 and _as_int(row[2]) is not None:
                code = _subject_code(row[1]) or _subject_code(row[0])
                if code:
                    subjects[_as_int(row[2])] = code
    return videos, subjects


def _load_cas(path: Path, sheets: list[list[tuple]], found: AnnotationFile) -> list:
    videos, subjects = _cas_maps(sheets[1:])
    out = []
    for i, row in enumerate(sheets[0]):
        if _blank(row):
            continue
        where = f"{path} sheet 1 row {i + 1}"
        if len(row) < 8:
            raise FlowkitError(f"{where}: should have the 8+ CAS(ME)^2 columns (subject, video, onset, apex, offset, "
                               f"AUs, emotion, type), got {len(row)}")
        if _number(row[2]) is None and "onset" in _norm(row[2]):
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
        iv = _interval(where, video, subject, onset=row[2], apex=row[3], offset=row[4], kind=_type_of(row[7]),
                       found=found)
        out.append((where, _key(row), iv))
    return out


def _load_xlsx(path: Path) -> tuple[AnnotationFile, list]:
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
    if not sheets or not any(not _blank(r) for r in sheets[0]):
        raise FlowkitError(f"annotation workbook {path} should have rows on its first sheet, got none")
    header_at = _find_samm_header(sheets[0])
    if header_at is not None:
        found = AnnotationFile(path, "SAMM-LV workbook")
        return found, _load_samm(path, sheets[0], header_at, found)
    found = AnnotationFile(path, "CAS(ME)^2 workbook")
    return found, _load_cas(path, sheets, found)


def read_annotations(path: str | os.PathLike) -> AnnotationFile:
    """Read a CAS(ME)^2 or SAMM-LV workbook (.xlsx) or a generic CSV (see the module doc) and say
    what was done to its rows.

    Raises:
        FlowkitError: missing file, unknown extension, missing columns, a bad row, a repeated row,
            a video with two subjects, or no rows (the message names the file and the rows).
    """
    p = Path(path)
    if not p.is_file():
        raise FlowkitError(f"annotation file should exist, got {str(p)!r} which does not")
    suffix = p.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        found, rows = _load_xlsx(p)
    elif suffix in (".csv", ".txt"):
        found = AnnotationFile(p, "CSV")
        rows = _load_csv(p, found)
    else:
        raise FlowkitError(f"annotation file should be .xlsx or .csv, got {str(p)!r}")
    _check_rows(p, rows)
    found.intervals = [iv for _, _, iv in rows]
    return found


def load_annotations(path: str | os.PathLike) -> list[Interval]:
    """The intervals of :func:`read_annotations`, with one ``UserWarning`` per kind of note
    (dropped rows, truncated frame numbers, apex outside the interval).

    Returns:
        list of :class:`Interval`, 0-based inclusive, in file order.
    """
    found = read_annotations(path)
    for line in found.warnings():
        warnings.warn(line, UserWarning, stacklevel=2)
    return found.intervals


def derive_k(intervals: Iterable[Interval], type: str) -> int:  # noqa: A002 - SPEC's word
    """k = int((N + 1) / 2), N the mean of (offset - onset) over intervals of ``type`` (SPEC 2).

    The intervals hold the 0-based frames the released code computes (``int(x - 1)`` of each
    1-based value), so N is its ``cal_k``'s mean over the same rows.

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


def annotation_summary(path: str | os.PathLike, *, videos: str | os.PathLike | None = None) -> dict:
    """What ``flowkit annotations`` prints: the format, per type the intervals, mean length N and
    k, the rows dropped or truncated with their reason, the subjects and video ids; with
    ``videos`` (an input root, as for ``flowkit extract``), which annotation videos match its
    videos and which do not.

    Returns:
        a JSON-serialisable dict.
    """
    found = read_annotations(path)
    ivs = found.intervals
    types = {}
    for t in TYPES:
        lengths = [iv.offset - iv.onset for iv in ivs if iv.type == t]
        if lengths:
            types[t] = {"intervals": len(lengths), "mean_length": sum(lengths) / len(lengths),
                        "k": derive_k(ivs, t)}
    out = {
        "path": str(found.path),
        "format": found.format,
        "types": types,
        "dropped": [asdict(n) for n in found.dropped],
        "truncated": [asdict(n) for n in found.truncated],
        "apex_outside": [asdict(n) for n in found.apex_outside],
        "apex_not_annotated": found.apex_missing,
        "subjects": sorted({iv.subject for iv in ivs}),
        "videos": sorted({iv.video for iv in ivs}),
    }
    if videos is not None:
        from flowkit.io.sources import discover_videos

        inputs = discover_videos(videos)
        by_id, unknown = match_videos([v.video_id for v in inputs], ivs)
        out["match"] = {"root": str(videos), "input_videos": len(inputs),
                        "matched": len(out["videos"]) - len(unknown), "unmatched": unknown,
                        "inputs_without_annotations": sorted(v.video_id for v in inputs if v.video_id not in by_id)}
    return out


def format_summary(summary: dict) -> str:
    """The text form of :func:`annotation_summary`."""
    lines = [f"{summary['path']}: {summary['format']}"]
    for t, row in summary["types"].items():
        lines.append(f"  {t}: {row['intervals']} intervals, mean length N = {row['mean_length']:.2f} frames, "
                     f"k = {row['k']}")
    for key, label in (("dropped", "dropped: {} row(s)"), ("truncated", "truncated with int(x - 1): {} value(s)"),
                       ("apex_outside", "apex outside onset..offset: {} row(s)")):
        notes = summary[key]
        lines.append("  " + label.format(len(notes)))
        lines += [f"    {_short(n['where'])}: {n['what']}" for n in notes]
    lines.append(f"  apex not annotated: {summary['apex_not_annotated']} row(s)")
    lines.append(f"  subjects ({len(summary['subjects'])}): {' '.join(summary['subjects'])}")
    lines.append(f"  videos ({len(summary['videos'])}): {' '.join(summary['videos'])}")
    match = summary.get("match")
    if match is not None:
        lines.append(f"  {match['matched']} of {len(summary['videos'])} annotation video(s) match the "
                     f"{match['input_videos']} video(s) under {match['root']}")
        if match["unmatched"]:
            lines.append(f"  no video under {match['root']} for: {' '.join(match['unmatched'])}")
    return "\n".join(lines)
