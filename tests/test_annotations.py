"""Annotation readers (SPEC 10) on small workbooks/CSVs built here, and derive_k (SPEC 2).

The published layouts, rebuilt in full, are in tests/test_datasets.py."""

from __future__ import annotations

import pytest

openpyxl = pytest.importorskip("openpyxl")

from flowkit.errors import FlowkitError  # noqa: E402
from flowkit.io.annotations import Interval, derive_k, k_by_type, load_annotations, match_videos  # noqa: E402


def _workbook(path, sheets: list[list[tuple]]):
    wb = openpyxl.Workbook()
    ws = wb.active
    for i, rows in enumerate(sheets):
        if i:
            ws = wb.create_sheet(f"sheet{i + 1}")
        for row in rows:
            ws.append(list(row))
    wb.save(path)
    return path


CAS_ROWS = [
    (1, "disgust1_1", 557, 572, 608, "4+7", "disgust", "macro-expression", "disgust"),
    (1, "anger1_2", 10, 12, 0, "4", "anger", "micro-expression", "anger"),
    (2, "disgust1_1", 100, 110, 130, "9", "disgust", "macro-expression", ""),
]
# Subject sheet: column A (or B, as SOFTNet's reader takes it) the subject code, column C the number
# used on sheet 1.
CAS_SUBJECTS = [("15", "s15", 1), (16, "s16", 2)]
# Video sheet: column A the 4-digit code, column B the name.
CAS_VIDEOS = [("0101", "disgust1"), (401, "anger1")]


def test_cas_workbook_no_header(tmp_path):
    path = _workbook(tmp_path / "cas.xlsx", [CAS_ROWS, CAS_SUBJECTS, CAS_VIDEOS])
    ivs = load_annotations(path)
    assert ivs == [
        Interval("15_0101", "s15", 556, 571, 607, "macro"),
        Interval("15_0401", "s15", 9, 11, 11, "micro"),  # offset 0 -> apex (SPEC 6)
        Interval("16_0101", "s16", 99, 109, 129, "macro"),
    ]


def test_cas_workbook_header_row_and_sheet_order(tmp_path):
    header = ("subject", "video", "onset", "apex", "offset", "AU", "emotion", "type", "self-report")
    subjects = [(None, "code", "number")] + [("x", 15, 1), ("x", 16, 2)]  # codes in column B, own header
    path = _workbook(tmp_path / "cas.xlsx", [[header, *CAS_ROWS], CAS_VIDEOS, subjects])
    ivs = load_annotations(path)
    assert [(iv.video, iv.subject) for iv in ivs] == [("15_0101", "s15"), ("15_0401", "s15"), ("16_0101", "s16")]


def test_cas_workbook_without_naming_sheets(tmp_path):
    path = _workbook(tmp_path / "cas.xlsx", [CAS_ROWS[:1]])
    assert load_annotations(path) == [Interval("disgust1", "s01", 556, 571, 607, "macro")]


def test_cas_unknown_subject_in_naming_sheets(tmp_path):
    rows = [(9, "disgust1_1", 5, 6, 7, "", "", "macro-expression", "")]
    path = _workbook(tmp_path / "cas.xlsx", [rows, CAS_SUBJECTS, CAS_VIDEOS])
    with pytest.raises(FlowkitError, match=r"cas.xlsx sheet 1 row 1: subject 9"):
        load_annotations(path)


def _samm(path, rows, n_header=9):
    """Preamble rows, the header (row 10 in the published workbook), then ``rows``."""
    top = [(f"SAMM Long Videos note {i}",) for i in range(n_header)]
    header = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
              "Action Units", "Notes")
    return _workbook(path, [[*top, header, *rows]])


@pytest.mark.parametrize("n_header", [9, 10])
def test_samm_workbook(tmp_path, n_header):
    # Filename is <subject>_<video>_<index>; the video (the frame folder) is its first two fields.
    rows = [
        ("006", "006_1_1", 1, 566, 648, 743, 178, "Macro", "R12", ""),
        ("006", "006_1_2", 1, 0, 10, 40, 41, "Macro", "R12", "starts before the video"),
        ("007", "007_3_12", 3, 2021, 2046, 2081, 61, "Micro - 1/2", "R14", ""),
    ]
    with pytest.warns(UserWarning, match="dropped 1 macro interval"):
        ivs = load_annotations(_samm(tmp_path / "samm.xlsx", rows, n_header))
    assert ivs == [Interval("006_1", "006", 565, 647, 742, "macro"),
                   Interval("007_3", "007", 2020, 2045, 2080, "micro")]


def test_samm_bad_type_names_row(tmp_path):
    rows = [("006", "006_1_1", 1, 5, 6, 7, 3, "Macro", "", ""), ("006", "006_1_2", 1, 5, 6, 7, 3, "Nano", "", "")]
    with pytest.raises(FlowkitError, match=r"samm.xlsx row 12: type should be macro or micro, got 'Nano'"):
        load_annotations(_samm(tmp_path / "samm.xlsx", rows))


def _csv(path, text):
    path.write_text(text)
    return path


def test_csv(tmp_path):
    path = _csv(tmp_path / "a.csv", "video,subject,onset,apex,offset,type\nv1,s1,1,3,5,macro\nv2,s2,10,11,0,micro\n\n")
    assert load_annotations(path) == [Interval("v1", "s1", 0, 2, 4, "macro"), Interval("v2", "s2", 9, 10, 10, "micro")]


@pytest.mark.parametrize(
    "body, match",
    [
        ("v1,s1,9,9,5,macro", r"a.csv row 2: onset should not come after offset"),
        ("v1,s1,1,2,3,nano", r"a.csv row 2: type should be macro or micro"),
        ("v1,s1,x,2,3,macro", r"a.csv row 2: onset should be a frame number, got 'x'"),
        ("v1,s1,1,y,3,macro", r"a.csv row 2: apex should be a frame number, got 'y'"),
        ("v1,s1,1,0,0,macro", r"a.csv row 2: with offset 0 \(not annotated\) the apex should be"),
        ("v1,s1,0,2,3,macro", r"a.csv row 2: onset should be a 1-based frame number"),
        ("v1,s1,1", r"a.csv row 2: should have 6 columns"),
    ],
)
def test_csv_bad_rows(tmp_path, body, match):
    path = _csv(tmp_path / "a.csv", "video,subject,onset,apex,offset,type\n" + body + "\n")
    with pytest.raises(FlowkitError, match=match):
        load_annotations(path)


def test_csv_missing_column(tmp_path):
    path = _csv(tmp_path / "a.csv", "video,onset,apex,offset,type\nv1,1,2,3,macro\n")
    with pytest.raises(FlowkitError, match="missing subject"):
        load_annotations(path)


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(FlowkitError, match="should exist"):
        load_annotations(tmp_path / "nope.csv")
    with pytest.raises(FlowkitError, match=r"should be \.xlsx or \.csv"):
        load_annotations(_csv(tmp_path / "a.json", "{}"))
    with pytest.raises(FlowkitError, match="readable .xlsx"):
        load_annotations(_csv(tmp_path / "b.xlsx", "not a zip"))


def _iv(on, off, kind):
    return Interval("v", "s", on, on, off, kind)


def test_derive_k_hand_cases():
    # N = mean(offset - onset); k = int((N + 1) / 2)
    assert derive_k([_iv(0, 10, "micro")], "micro") == 5            # N 10 -> 5.5 -> 5
    assert derive_k([_iv(0, 11, "micro")], "micro") == 6            # N 11 -> 6
    assert derive_k([_iv(0, 10, "micro"), _iv(0, 13, "micro")], "micro") == 6  # N 11.5 -> 6.25
    # CAS(ME)^2's published micro k = 6 means N in [11, 13); macro 18 means N in [35, 37).
    assert derive_k([_iv(0, 35, "macro"), _iv(0, 36, "macro")], "macro") == 18
    # SAMM-LV: micro 37 <-> N in [73, 75); macro 174 <-> N in [347, 349).
    assert derive_k([_iv(100, 174, "micro")] * 3 + [_iv(0, 73, "micro")], "micro") == 37
    assert derive_k([_iv(1, 348, "macro"), _iv(0, 348, "macro")], "macro") == 174
    ivs = [_iv(0, 11, "micro"), _iv(0, 35, "macro")]
    assert k_by_type(ivs) == {"macro": 18, "micro": 6}


def test_derive_k_errors():
    with pytest.raises(FlowkitError, match="at least one micro"):
        derive_k([_iv(0, 10, "macro")], "micro")
    with pytest.raises(FlowkitError, match="macro or micro"):
        derive_k([], "nano")


def test_match_videos():
    ivs = [Interval("15_0101", "s15", 0, 1, 2, "macro"), Interval("v2", "s2", 0, 1, 2, "micro"),
           Interval("ghost", "s9", 0, 1, 2, "macro")]
    ids = ["s15_15_0101disgustingteeth", "s15_15_01011", "v2"]
    found, unknown = match_videos(ids, ivs)
    assert set(found) == {"s15_15_0101disgustingteeth", "v2"}
    assert unknown == ["ghost"]
