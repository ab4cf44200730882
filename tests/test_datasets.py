"""CAS(ME)^2 and SAMM-LV read as published, the way the released SOFTNet code reads them.

The workbooks are rebuilt here with openpyxl to the published layouts, with our own rows:

- SAMM-LV (``SAMM_LongVideos_V2_Release.xlsx``): 9 preamble rows (one a merged note cell), the
  header on row 10, ``Subject`` as text ('006'), ``Duration`` as a formula, ``Filename``
  ``<subject>_<video>_<index>``, Macro frame numbers with float noise (566.4000000000001,
  8.999999999999998), apex -1 for "not annotated". The released reader
  (genbing99/SoftNet-SpotME ``load_label.py``, ``load_excel``/``load_gt``) skips rows 1-10, takes
  the video as the first two '_' fields of Filename, converts every frame number with
  ``int(x - 1)`` and drops Macro rows with onset 0; LGSNet (williamlee91/LGSNet
  ``get_anatation_samm.py``, ``header=9``) and AUW-GCN (xjtupanda/AUW-GCN
  ``feature_extraction/new_feature_segment.py``, ``'_'.join(split('_')[:2])``) read the same layout.
- CAS(ME)^2 (``CAS(ME)^2code_final.xlsx``): sheet ``CASFEcode_final`` without a header (subject
  number, video ``<name>_<n>``, onset, apex, offset, AUs, emotion, type, self-report), sheet
  ``naming rule1`` (code, folder 's15', subject number; ``load_excel`` maps column C to column B)
  and ``naming rule2`` (4-digit code as text, name; read with ``converters={0: str}``). Offset 0
  means "use the apex" (``load_gt``).

Expected values are worked out by hand in the comments with the released code's rule.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

openpyxl = pytest.importorskip("openpyxl")

from flowkit.errors import FlowkitError  # noqa: E402
from flowkit.io.annotations import (  # noqa: E402
    Interval,
    annotation_summary,
    derive_k,
    k_by_type,
    load_annotations,
    match_videos,
    read_annotations,
)
from flowkit.io.sources import discover_videos, open_source  # noqa: E402

SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
               "Action Units", "Notes")


def samm_workbook(path, rows):
    """A SAMM-LV workbook: rows 1-9 preamble (A3:J6 one merged note), header row 10, data from row 11.

    ``rows`` are (subject text, filename, inducement, onset, apex, offset, type, AUs); Duration is the
    formula ``=F - D + 1`` of its row, as a spreadsheet computes it.
    """
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    ws["A1"] = "SAMM Long Videos: facial movements, Macro- and Micro-expressions"
    ws["A2"] = "Frame numbers at 200 fps"
    ws["A3"] = "Note: some movements start before the video; their onset is 0."
    ws.merge_cells("A3:J6")
    ws["A8"] = "Micro - 1/2: duration of half a second or less"
    for col, name in enumerate(SAMM_HEADER, start=1):
        ws.cell(row=10, column=col, value=name)
    for r, (subject, filename, code, onset, apex, offset, kind, aus) in enumerate(rows, start=11):
        ws.cell(row=r, column=1, value=subject).number_format = "@"
        for col, value in enumerate((filename, code, onset, apex, offset), start=2):
            ws.cell(row=r, column=col, value=value)
        ws.cell(row=r, column=7, value=f"=F{r}-D{r}+1")
        ws.cell(row=r, column=8, value=kind)
        ws.cell(row=r, column=9, value=aus)
    wb.save(path)
    return path


SAMM_ROWS = [
    ("006", "006_1_1", 1, 566.4000000000001, 648, 743.2, "Macro", "R12"),  # row 11
    ("006", "006_1_2", 1, 0, 10, 40, "Macro", "R2"),                       # row 12: onset 0, dropped
    ("006", "006_1_3", 1, 1, -1, 300, "Macro", "4"),                       # row 13: onset 1, apex -1
    ("011", "011_6_10", 6, 2021, 2046, 2081, "Micro - 1/2", "R14"),        # row 14
    ("011", "011_6_11", 6, 8.999999999999998, 12, 30.5, "Micro - 1/2", "7"),  # row 15
]
# int(x - 1) per value: 566.4000000000001 -> 565, 743.2 -> 742, 8.999999999999998 -> 7 (rounding would
# give 8), 30.5 -> 29; apex -1 -> None.
SAMM_EXPECTED = [
    Interval("006_1", "006", 565, 647, 742, "macro"),
    Interval("006_1", "006", 0, None, 299, "macro"),
    Interval("011_6", "011", 2020, 2045, 2080, "micro"),
    Interval("011_6", "011", 7, 11, 29, "micro"),
]


def test_samm_workbook_as_published(tmp_path):
    path = samm_workbook(tmp_path / "SAMM_LongVideos_V2_Release.xlsx", SAMM_ROWS)
    found = read_annotations(path)
    assert found.format == "SAMM-LV workbook"
    assert found.intervals == SAMM_EXPECTED
    assert [n.where.endswith("row 12") for n in found.dropped] == [True]
    assert sorted(n.what for n in found.truncated) == [
        "offset 30.5 -> 30 (1-based)", "offset 743.2 -> 743 (1-based)", "onset 566.4000000000001 -> 566 (1-based)",
        "onset 8.999999999999998 -> 8 (1-based)"]
    assert found.apex_missing == 1
    with pytest.warns(UserWarning) as caught:
        load_annotations(path)
    lines = [str(w.message) for w in caught]
    assert any("dropped 1 macro interval" in m and "row 12" in m for m in lines)
    assert any("4 fractional frame number(s) truncated" in m for m in lines)


def test_samm_k_follows_the_released_rule(tmp_path):
    ivs = read_annotations(samm_workbook(tmp_path / "s.xlsx", SAMM_ROWS)).intervals
    # cal_k: N = mean(int(off - 1) - int(on - 1)). Macro: 742 - 565 = 177, 299 - 0 = 299 -> N 238 ->
    # k int(239 / 2) = 119. Micro: 2080 - 2020 = 60, 29 - 7 = 22 -> N 41 -> k int(42 / 2) = 21.
    assert k_by_type(ivs) == {"macro": 119, "micro": 21}
    # With raw (untruncated) values N would be 176.8 and 299 -> 237.9 -> k 119 as well, but the micro
    # N would be 60 + 21.5 -> 40.75 -> k 20: the truncation matters.
    assert derive_k(ivs, "micro") == 21


def test_samm_video_ids_match_frame_folders(tmp_path):
    ivs = read_annotations(samm_workbook(tmp_path / "s.xlsx", SAMM_ROWS)).intervals
    img = np.zeros((4, 4), np.uint8)
    import cv2

    for video in ("006_1", "011_6", "011_7"):
        (tmp_path / "SAMM_longvideos" / video).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "SAMM_longvideos" / video / f"{video}_0001.jpg"), img)
    inputs = discover_videos(tmp_path / "SAMM_longvideos")
    by_video, unknown = match_videos([v.video_id for v in inputs], ivs)
    assert unknown == [] and sorted(by_video) == ["006_1", "011_6"]
    assert {v.video_id: v.subject for v in inputs}["011_6"] == "011"


CAS_SUBJECTS = [(15, "s15", 1), (16, "s16", 2), (19, "s19", 3)]  # naming rule1: code, folder, number
CAS_VIDEOS = [("0101", "disgust1"), ("0102", "disgust2"), ("0401", "anger1"), ("0502", "happy1")]  # naming rule2
CAS_ROWS = [
    (1, "disgust1_1", 557, 572, 608, "4+7", "disgust", "macro-expression", "disgust"),
    (1, "anger1_2", 10, 12, 0, "4", "anger", "micro-expression", "anger"),           # offset 0 -> apex
    (2, "disgust2_1", 100, 0, 130, "9", "disgust", "macro-expression", "disgust"),   # apex 0: not annotated
    (3, "happy1_3", 200, 240, 230, "12", "happy", "macro-expression", "happy"),      # apex > offset
]
CAS_EXPECTED = [
    Interval("15_0101", "s15", 556, 571, 607, "macro"),
    Interval("15_0401", "s15", 9, 11, 11, "micro"),
    Interval("16_0102", "s16", 99, None, 129, "macro"),
    Interval("19_0502", "s19", 199, 239, 229, "macro"),
]


def cas_workbook(path, rows=CAS_ROWS, *, numeric_codes=False):
    """CAS(ME)^2code_final.xlsx: CASFEcode_final (no header), naming rule1, naming rule2 (codes as text)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "CASFEcode_final"
    for row in rows:
        ws.append(list(row))
    rule1 = wb.create_sheet("naming rule1")
    for row in CAS_SUBJECTS:
        rule1.append(list(row))
    rule2 = wb.create_sheet("naming rule2")
    for code, name in CAS_VIDEOS:
        rule2.append([int(code) if numeric_codes else code, name])
        if not numeric_codes:
            rule2.cell(row=rule2.max_row, column=1).number_format = "@"
    wb.save(path)
    return path


@pytest.mark.parametrize("numeric_codes", [False, True])
def test_cas_workbook_as_published(tmp_path, numeric_codes):
    found = read_annotations(cas_workbook(tmp_path / "CAS(ME)^2code_final.xlsx", numeric_codes=numeric_codes))
    assert found.format == "CAS(ME)^2 workbook"
    assert found.intervals == CAS_EXPECTED
    assert found.apex_missing == 1
    assert [n.where.endswith("sheet 1 row 4") for n in found.apex_outside] == [True]
    # k: macro N = (51 + 30 + 30) / 3 = 37 -> k 19; micro N = 2 -> k 1
    assert k_by_type(found.intervals) == {"macro": 19, "micro": 1}


def test_apex_outside_its_interval_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"1 row\(s\) with the apex outside onset..offset, kept: sheet 1 row 4"):
        load_annotations(cas_workbook(tmp_path / "c.xlsx"))


def _frames(folder, names):
    import cv2

    folder.mkdir(parents=True)
    for name in names:
        assert cv2.imwrite(str(folder / name), np.zeros((4, 4), np.uint8))


def test_cas_root_as_distributed_uses_rawpic_with_every_label(tmp_path):
    root = tmp_path / "CAS(ME)^2"
    names = ["img001.jpg", "img010.jpg", "img999.jpg", "img1000.jpg", "img1001.jpg"]
    for subject, video in (("s15", "15_0101disgustingteeth"), ("s15", "15_0401girlcrashing"),
                           ("s16", "16_0102eatingworms"), ("s19", "19_0502funnyerrors")):
        _frames(root / "rawpic" / subject / video, names)
        (root / "rawvideo" / subject).mkdir(parents=True, exist_ok=True)
        (root / "rawvideo" / subject / f"{video}.avi").write_bytes(b"the same video as a file")
    with pytest.warns(UserWarning, match="holds both rawpic/ and rawvideo/"):
        inputs = discover_videos(root)
    assert all("rawpic" in str(v.path) for v in inputs) and len(inputs) == 4
    by_video, unknown = match_videos([v.video_id for v in inputs], read_annotations(cas_workbook(
        tmp_path / "c.xlsx")).intervals)
    assert unknown == [] and sum(len(v) for v in by_video.values()) == len(CAS_EXPECTED)
    # img001 .. img999, img1000: natural order, as natsort orders them in the released code
    assert [f.name for f in open_source(inputs[0].path).files] == names


def test_cas_rawvideo_alone_keeps_subjects(tmp_path, data_dir):
    import shutil

    from video_clips import write_video

    data = tmp_path / "rawvideo" / "s15"
    data.mkdir(parents=True)
    write_video(data_dir / "single_face.mp4", data / "15_0101disgustingteeth.avi", 3, fourcc="MJPG")
    shutil.copy(data / "15_0101disgustingteeth.avi", data / "15_0401girlcrashing.avi")
    inputs = discover_videos(tmp_path / "rawvideo")
    assert [(v.video_id, v.subject) for v in inputs] == [("s15_15_0101disgustingteeth", "s15"),
                                                         ("s15_15_0401girlcrashing", "s15")]


def test_symlinked_file_is_one_video(tmp_path, data_dir):
    import shutil

    (tmp_path / "a").mkdir()
    shutil.copy(data_dir / "single_face.mp4", tmp_path / "a" / "clip.mp4")
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "a" / "clip.mp4", tmp_path / "b" / "same.mp4")
    _frames(tmp_path / "elsewhere" / "006_1", ["006_1_0001.jpg"])
    os.symlink(tmp_path / "elsewhere" / "006_1", tmp_path / "b" / "006_1")  # a linked frame folder
    os.symlink(tmp_path, tmp_path / "b" / "loop")  # a link back up the tree
    found = discover_videos(tmp_path)
    assert [v.video_id for v in found] == ["a_clip", "006_1"]
    assert found[1].path == tmp_path / "b" / "006_1"


def _csv(path, body):
    path.write_text("video,subject,onset,apex,offset,type\n" + body)
    return path


def test_a_video_with_two_subjects_is_refused(tmp_path):
    path = _csv(tmp_path / "a.csv", "v1,s1,1,2,3,micro\nv2,s2,1,2,3,micro\nv1,s9,5,6,7,macro\n")
    with pytest.raises(FlowkitError, match=r"video v1 with subject 's1' \(row 2\) and 's9' \(row 4\)"):
        load_annotations(path)


def test_a_repeated_row_is_refused(tmp_path):
    path = _csv(tmp_path / "a.csv", "v1,s1,1,2,3,micro\nv1,s1,5,6,9,macro\nv1,s1,1,2,3,micro\n")
    with pytest.raises(FlowkitError, match=r"should not repeat, got row 4 identical to row 2"):
        load_annotations(path)
    rows = [*SAMM_ROWS, SAMM_ROWS[3]]
    with pytest.raises(FlowkitError, match=r"row 16 identical to row 14"):
        load_annotations(samm_workbook(tmp_path / "s.xlsx", rows))


def test_a_file_without_rows_is_refused(tmp_path):
    with pytest.raises(FlowkitError, match="should hold at least one annotation row, got none"):
        load_annotations(_csv(tmp_path / "a.csv", ""))
    with pytest.raises(FlowkitError, match="should hold at least one annotation row, got none"):
        load_annotations(samm_workbook(tmp_path / "s.xlsx", []))


def test_summary_counts_and_matching(tmp_path):
    path = samm_workbook(tmp_path / "s.xlsx", SAMM_ROWS)
    _frames(tmp_path / "videos" / "006_1", ["006_1_0001.jpg"])
    _frames(tmp_path / "videos" / "012_2", ["012_2_0001.jpg"])
    s = annotation_summary(path, videos=tmp_path / "videos")
    assert s["format"] == "SAMM-LV workbook"
    assert s["types"] == {"macro": {"intervals": 2, "mean_length": 238.0, "k": 119},
                          "micro": {"intervals": 2, "mean_length": 41.0, "k": 21}}
    assert [d["what"] for d in s["dropped"]] == ["macro interval with onset 0"]
    assert s["subjects"] == ["006", "011"] and s["videos"] == ["006_1", "011_6"]
    assert s["match"]["matched"] == 1 and s["match"]["unmatched"] == ["011_6"]
    assert s["match"]["inputs_without_annotations"] == ["012_2"]


@pytest.fixture(scope="module")
def samm_tree(tmp_path_factory, data_dir, mediapipe_model):
    """SAMM_longvideos/<subject>_<video>/<subject>_<video>_NNNN.png from the shared face clip."""
    from video_clips import write_frames

    root = tmp_path_factory.mktemp("samm")
    for video, n in (("006_1", 20), ("011_6", 12)):
        folder = write_frames(data_dir / "single_face.mp4", root / "SAMM_longvideos" / video, n)
        for i in range(1, n + 1):
            (folder / f"img{i}.png").rename(folder / f"{video}_{i:04d}.png")
    return root


def test_extract_stores_every_kept_samm_interval(samm_tree, tmp_path):
    from flowkit.io.store import FeatureStore
    from flowkit.pipeline.extract import TEST_TVL1, extract

    rows = [
        ("006", "006_1_1", 1, 3.4000000000000004, 5, 8.2, "Macro", "R12"),  # -> 0-based 2, 4, 7
        ("006", "006_1_2", 1, 0, 2, 9, "Macro", "R2"),                      # onset 0: dropped
        ("011", "011_6_1", 6, 2, -1, 4, "Micro - 1/2", "R14"),              # apex -1 -> None
        ("011", "011_6_2", 6, 10, 11, 30, "Macro", "4"),                     # ends past frame 12: kept
        ("020", "020_1_1", 1, 5, 6, 7, "Micro - 1/2", "1"),                 # no such folder
    ]
    book = samm_workbook(tmp_path / "SAMM_LongVideos_V2_Release.xlsx", rows)
    with pytest.warns(UserWarning) as caught:
        report = extract([samm_tree / "SAMM_longvideos"], tmp_path / "o.zarr", ks=[2], annotations=book,
                         flow_params=TEST_TVL1, workers=1, progress=False)
    assert report.ok, report.summary()
    store = FeatureStore(tmp_path / "o.zarr")
    assert store.annotations("006_1") == [{"onset": 2, "apex": 4, "offset": 7, "type": "macro"}]
    assert store.annotations("011_6") == [{"onset": 1, "apex": None, "offset": 3, "type": "micro"},
                                          {"onset": 9, "apex": 10, "offset": 29, "type": "macro"}]
    assert store.video_attrs("011_6")["subject"] == "011"
    messages = [str(w.message) for w in caught]
    assert any("'011_6, macro, onset 10, offset 30 (1-based)' ends past the last frame 12 of 011_6" in m
               for m in messages)
    summary = report.summary()  # the end summary names the unmatched rows and the row past the end
    assert "1 annotation row(s) of 1 video(s) not among the inputs, ignored: 020_1" in summary
    assert "ends past the last frame 12 of 011_6" in summary


def test_annotations_matching_no_input_stop_before_computing(samm_tree, tmp_path):
    from flowkit.pipeline.extract import TEST_TVL1, extract

    rows = [("020", "020_1_1", 1, 5, 6, 7, "Micro - 1/2", "1"), ("021", "021_3_2", 3, 5, 6, 9, "Macro", "1")]
    book = samm_workbook(tmp_path / "s.xlsx", rows)
    with pytest.raises(FlowkitError, match=r"got none in common: annotation videos 020_1, 021_3; input videos "
                                           r"006_1, 011_6"):
        extract([samm_tree / "SAMM_longvideos"], tmp_path / "o.zarr", ks=[2], annotations=book,
                flow_params=TEST_TVL1, workers=1, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def _flowkit(capsys, *args) -> tuple[int, str, str]:
    from cli.flowkit_app import main

    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code or 0, out.out, out.err


def test_annotations_command(tmp_path, capsys):
    book = samm_workbook(tmp_path / "s.xlsx", SAMM_ROWS)
    _frames(tmp_path / "videos" / "006_1", ["006_1_0001.jpg"])
    code, out, _ = _flowkit(capsys, "annotations", book, "--videos", tmp_path / "videos")
    assert code == 0
    assert "SAMM-LV workbook" in out and "macro: 2 intervals, mean length N = 238.00 frames, k = 119" in out
    assert "row 12: macro interval with onset 0" in out and "onset 566.4000000000001 -> 566" in out
    assert "1 of 2 annotation video(s) match" in out and "no video under" in out and "011_6" in out
    code, out, _ = _flowkit(capsys, "annotations", book, "--json")
    import json

    assert code == 0 and json.loads(out)["types"]["micro"]["k"] == 21
    bad = _csv(tmp_path / "a.csv", "v1,s1,1,2,3,micro\nv1,s2,4,5,6,micro\n")
    code, out, err = _flowkit(capsys, "annotations", bad)
    assert code == 2 and out == ""
    assert err.strip().endswith("a video should have one subject, got video v1 with subject 's1' (row 2) and "
                                f"'s2' (row 3) in {bad}")


def test_default_units_keep_the_overlap_of_large_k_within_15_percent():
    """SAMM-LV's k = 37 and 174 (SPEC 2) on a 5,000-frame folder (every frame a keyframe): the frames
    decoded again (each unit's max(k) frames shared with the next) stay within MAX_OVERLAP."""
    from flowkit.pipeline.plan import MAX_OVERLAP, VideoWork, min_units_for, plan_units

    n, chunk = 5000, 64
    for ks in ([37], [174], [37, 174]):
        todo = {k: range(-(-(n - k) // chunk)) for k in ks}
        units = plan_units([VideoWork("v", n, todo, chunk)], min_units=min_units_for(2))
        decoded = sum(u.frames[1] - u.frames[0] for u in units)
        assert decoded / n - 1 <= MAX_OVERLAP, (ks, decoded)
    # an explicit unit size is kept as given (rounded up to whole chunks)
    units = plan_units([VideoWork("v", n, {174: range(76)}, chunk)], unit_windows=256)
    assert {u.stop - u.start for u in units} == {256}
