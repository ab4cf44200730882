"""Pseudo-labels (SPEC 6), hand-computed. Window i covers frames [i, i + k - 1]."""

from __future__ import annotations

import numpy as np
import pytest

from spotnet import SpotnetError, pseudo_labels


def test_unit_borders():
    # k = 3, interval (4, 6): positive iff [i, i+2] meets [5, 6], i.e. i in 3..6.
    # Window 2 = [2, 4] only touches the onset frame 4 -> 0; window 6 = [6, 8] touches the offset -> 1.
    labels = pseudo_labels(10, 3, [(4, 6)])
    assert labels.dtype == np.float32 and labels.shape == (10,)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_unit_single_frame_interval_labels_nothing():
    # [onset + 1, offset] is empty when onset == offset.
    assert pseudo_labels(8, 2, [(3, 3)]).tolist() == [0] * 8


def test_unit_interval_at_video_start_and_end():
    # k = 2, (0, 1): [1, 1] is hit by windows 0 ([0, 1]) and 1 ([1, 2]).
    # (5, 7) with 6 windows: [6, 7] is hit by windows 5 ([5, 6]); window 6 does not exist.
    assert pseudo_labels(6, 2, [(0, 1), (5, 7)]).tolist() == [1, 1, 0, 0, 0, 1]


def test_linear_is_frame_inclusive_iou():
    # k = 3, (4, 6) has 3 frames. i=4: 3/3; i=3 or 5: 2/(3+3-2)=0.5; i=2 or 6: 1/(3+3-1)=0.2.
    labels = pseudo_labels(10, 3, [(4, 6)], kind="linear")
    np.testing.assert_allclose(labels, [0, 0, 0.2, 0.5, 1, 0.5, 0.2, 0, 0, 0], rtol=1e-7)  # float32 rounding of 0.2


def test_step_counts_iou_of_exactly_half():
    assert pseudo_labels(10, 3, [(4, 6)], kind="step").tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]


def test_max_over_intervals():
    # Window 2 = [2, 4]: IoU 1/5 with (4, 6) and 1/(3+2-1) = 1/4 with (1, 2); the max is 0.25.
    labels = pseudo_labels(10, 3, [(4, 6), (1, 2)], kind="linear")
    assert labels[2] == pytest.approx(0.25)
    assert labels[4] == 1.0


def test_no_intervals_and_no_windows():
    assert pseudo_labels(5, 3, []).tolist() == [0] * 5
    assert pseudo_labels(0, 3, [(1, 2)]).shape == (0,)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((5, 0, [(1, 2)]), {}, "k should be an integer >= 1"),
        ((5, 2.5, [(1, 2)]), {}, "k should be an integer >= 1"),
        ((-1, 2, [(1, 2)]), {}, "n_windows should be"),
        ((5, 2, [(3, 2)]), {}, "onset <= offset"),
        ((5, 2, [(-1, 2)]), {}, "0 <= onset"),
        ((5, 2, [(1, 2, 3)]), {}, "pairs"),
        ((5, 2, [(1, 2)]), {"kind": "cosine"}, "kind should be one of"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(SpotnetError, match=match):
        pseudo_labels(*args, **kwargs)
