"""The training generator against a transcription of the released notebook.

``transcribed`` is a plain re-statement, written for this test, of what ``SOFTNet_Spotting.ipynb``
(genbing99/SoftNet-SpotME) does to one fold's training windows from fold 2 on: cell 16's
``normalize`` (cv2.normalize NORM_MINMAX per channel, in place, channels last) has already run on
the base windows; ``data_augmentation`` appends ``np.fliplr``, ``cv2.GaussianBlur((7, 7), 0)``
and ``skimage.util.random_noise`` copies of each positive; ``generator`` normalises every batch
again before the model sees it. spotnet's :func:`spotnet.augment.training_windows` must agree.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from spotnet.augment import BLUR, FLIP, NOISE, NONE, augment, blur, item_noise, released_low_clip, training_windows
from spotnet.errors import SpotnetError

skimage_util = pytest.importorskip("skimage.util", reason="scikit-image transcribes random_noise")


def _normalize(hwc: np.ndarray) -> np.ndarray:
    out = hwc.copy()
    for c in range(out.shape[2]):
        out[:, :, c] = cv2.normalize(out[:, :, c], None, alpha=0, beta=1, norm_type=cv2.NORM_MINMAX)
    return out


def transcribed(raw_chw: np.ndarray, code: int, rng: np.random.Generator) -> np.ndarray:
    """One window as the notebook's model sees it (channels first for comparison)."""
    base = _normalize(raw_chw.transpose(1, 2, 0).copy())
    if code == FLIP:
        out = np.fliplr(base)
    elif code == BLUR:
        out = cv2.GaussianBlur(base, (7, 7), 0)
    elif code == NOISE:
        out = skimage_util.random_noise(base, rng=rng)
    else:
        out = base
    return _normalize(np.array(out).reshape(42, 42, 3)).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.3, size=(8, 3, 42, 42)).astype(np.float32)
    x[1, 2] = 0.0  # a constant channel: cv2.normalize maps it to 0, as minmax_normalize does
    x[2] += 1.5
    return x


@pytest.mark.parametrize("code", [NONE, FLIP, BLUR, NOISE])
def test_training_windows_match_the_notebook(raw, code):
    seed = 5
    items = np.arange(10, 10 + len(raw))
    ours = training_windows(torch.from_numpy(raw), [code] * len(raw), items=items, seed=seed).numpy()
    for row, item in enumerate(items):
        want = transcribed(raw[row], code, np.random.default_rng((seed, int(item))))
        # cv2.normalize scales by 1/range in float64 and rounds once; minmax_normalize divides
        # in float32: two float32 ulps of values <= 1 (2.4e-7) for NONE and FLIP. BLUR: OpenCV
        # and spotnet sum the same 7+7 float32 taps in another order, a few ulps, which the
        # second normalisation divides by the blurred range (>= 0.2 here): 2e-6. NOISE:
        # random_noise adds and clips in float64, spotnet in float32, then the same division: 1e-6.
        tol = {NONE: 2.4e-7, FLIP: 2.4e-7, BLUR: 2e-6, NOISE: 1e-6}[code]
        np.testing.assert_allclose(ours[row], want, rtol=0, atol=tol)


def test_noise_and_clip(raw):
    x = training_windows(torch.from_numpy(raw[:1]), [NONE]).numpy()
    noise = item_noise(0, [7])
    assert abs(float(noise.var()) - 0.01) < 0.002  # 5292 samples: standard error of the variance ~2e-4
    np.testing.assert_array_equal(noise, item_noise(0, [7]))
    assert not np.array_equal(noise, item_noise(1, [7]))
    out = augment(torch.from_numpy(x), [NOISE], noise=torch.from_numpy(noise)).numpy()
    assert out.min() == 0.0 and out.max() == 1.0  # clipped, as random_noise clips a non-negative image
    np.testing.assert_array_equal(out, np.clip(x + noise, 0, 1))
    low = augment(torch.from_numpy(x), [NOISE], noise=torch.from_numpy(noise), low=torch.tensor([-1.0])).numpy()
    assert low.min() < 0 and low.max() == 1.0
    np.testing.assert_array_equal(low, np.clip(x + noise, -1, 1))


def test_released_low_clip_follows_opencv(raw):
    lows = released_low_clip(raw)
    want = [-1.0 if _normalize(w.transpose(1, 2, 0).copy()).min() < 0 else 0.0 for w in raw]
    assert lows.tolist() == want
    assert -1.0 in want  # cv2.normalize leaves a rounding-size negative minimum in most windows


def test_blur_against_opencv():
    x = np.random.default_rng(0).random((2, 3, 42, 42)).astype(np.float32)
    ours = blur(torch.from_numpy(x)).numpy()
    for b in range(2):
        want = cv2.GaussianBlur(np.ascontiguousarray(x[b].transpose(1, 2, 0)), (7, 7), 0).transpose(2, 0, 1)
        np.testing.assert_allclose(ours[b], want, rtol=0, atol=1e-6)  # summation order only: a few float32 ulps


def test_rows_do_not_depend_on_their_batch(raw):
    codes = [NONE, FLIP, BLUR, NOISE, BLUR, NOISE, FLIP, NONE]
    items = np.arange(len(raw))
    whole = training_windows(torch.from_numpy(raw), codes, items=items, seed=2)
    for row in range(len(raw)):
        alone = training_windows(torch.from_numpy(raw[row:row + 1]), codes[row:row + 1], items=items[row:row + 1],
                                 seed=2)
        assert torch.equal(whole[row], alone[0])


def test_bad_codes(raw):
    with pytest.raises(SpotnetError, match="codes should be in 0..3"):
        augment(torch.from_numpy(raw[:1]), [7])
    with pytest.raises(SpotnetError, match="items should be given"):
        training_windows(torch.from_numpy(raw[:1]), [NOISE])
