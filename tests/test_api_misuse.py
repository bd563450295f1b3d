"""The Python API refuses bad input and accepts what a notebook user has (issue 33): one table of misuses, each with the
error it must raise (its type and a message naming the argument and the expectation) or a check of the right answer.
None of them may return a NaN score or a decision on garbage.

One small knn model is fitted once on the embedded sample at 64 px (`det`) and shared by every case."""
import math, warnings
from dataclasses import dataclass
from typing import Callable, Optional
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from anomaly_fastai.all import (DataError, KNNDetector, PatchCoreDetector, Preprocess, ThresholdWarning, dataframe_dataset,
                                evaluate_detector, paths_dataset, sample_dataset, score_images)
from anomaly_fastai.data import image_size
from anomaly_fastai.detector import Normalise
from anomaly_fastai.evaluate import rates_at_threshold

DS = sample_dataset()
GOOD = DS.test[-1].path   # a good test image
SIZE = (64, 64)           # the model's input size (H, W)


@pytest.fixture(scope='module')
def det():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ThresholdWarning)
        return KNNDetector(pre=Preprocess(64), device='cpu').fit(DS, progress=False)


def x_of(det) -> torch.Tensor: return det.pre.image(GOOD)[None]   # one good image as a model input batch


def decided(rows, n: int, map_size=None):
    "`rows` are `n` real decisions: finite scores, a label, maps of `map_size` (H, W)."
    assert len(rows) == n, rows
    for r in rows:
        assert math.isfinite(r['score']) and 0 <= r['norm_score'] <= 1 and r['label'] in ('good', 'anomaly'), r
        if map_size: assert tuple(r['map'].shape) == tuple(map_size), r['map'].shape
    return rows


def same_as_path(det, rows):
    "`rows` score the good image as its file does."
    decided(rows, 1, image_size(GOOD)[::-1])
    assert abs(rows[0]['score'] - det.predict(GOOD)[0]['score']) < 1e-5


@dataclass
class Case:
    id: str
    call: Callable                    # call(det, tmp_path) -> result
    error: Optional[type] = None      # the exception it must raise ...
    message: str = ''                 # ... with this in its message
    check: Optional[Callable] = None  # check(det, result) for a call that must succeed


CASES = [
    # tensors: model inputs, checked
    Case('uint8 tensor', lambda d, t: d.predict((x_of(d) * 255).byte()), TypeError, 'x: expected a float tensor in 0..1, got torch.uint8: x.float() / 255'),
    Case('0..255 float tensor', lambda d, t: d.predict(x_of(d) * 255), ValueError, 'x: expected pixel values in 0..1'),
    Case('ImageNet-normalised tensor', lambda d, t: d.predict((x_of(d) - 0.45) / 0.225), ValueError, 'pass images before any mean/std normalisation'),
    Case('NaN in a tensor', lambda d, t: d.predict(x_of(d).masked_fill(x_of(d) > 0.5, float('nan'))), ValueError, 'x: expected finite pixel values'),
    Case('inf in a tensor', lambda d, t: d.score(x_of(d).masked_fill(x_of(d) > 0.5, float('inf'))), ValueError, 'x: expected finite pixel values'),
    Case('one image (3, H, W)', lambda d, t: d.predict(x_of(d)[0]), check=lambda d, r: decided(r, 1, SIZE)),
    Case('one channel (1, H, W)', lambda d, t: d.predict(x_of(d)[0, :1]), ValueError, 'x: expected a tensor (B, 3, H, W) or (3, H, W) (RGB, channels first), got shape (1, 1, 64, 64)'),
    Case('channels last (B, H, W, 3)', lambda d, t: d.predict(x_of(d).permute(0, 2, 3, 1)), ValueError, 'got shape (1, 64, 64, 3)'),
    Case('not the input size', lambda d, t: d.predict(torch.rand(1, 3, 100, 100)), ValueError, 'x: expected images at the model input size (H, W) = (64, 64), got (100, 100); pass image files'),
    Case('empty batch', lambda d, t: d.score(torch.rand(0, 3, 64, 64)), ValueError, 'x: expected at least one image, got an empty batch'),
    Case('score() of a path', lambda d, t: d.score(GOOD), TypeError, 'x: expected a float tensor (B, 3, H, W) in 0..1, got PosixPath; pass image files'),
    # images: what a notebook user has, preprocessed by det.pre, maps over the whole image
    Case('a path (str)', lambda d, t: d.predict(str(GOOD)), check=same_as_path),
    Case('a list of paths', lambda d, t: d.predict([GOOD, DS.test[0].path]), check=lambda d, r: decided(r, 2, image_size(GOOD)[::-1])),
    Case('a PIL image', lambda d, t: d.predict(Image.open(GOOD)), check=same_as_path),
    Case('a camera frame (H, W, 3) uint8', lambda d, t: d.predict(np.asarray(Image.open(GOOD).convert('RGB'))), check=same_as_path),
    Case('a grayscale frame (H, W) uint8', lambda d, t: d.predict(np.asarray(Image.open(GOOD).convert('L'))), check=lambda d, r: decided(r, 1, image_size(GOOD)[::-1])),
    Case('a float numpy frame', lambda d, t: d.predict(np.asarray(Image.open(GOOD)) / 255.), ValueError, 'x: expected a uint8 array (H, W), (H, W, 3) or (H, W, 4)'),
    Case('a numpy batch (B, H, W, 3)', lambda d, t: d.predict(np.zeros((2, 64, 64, 3), np.uint8)), ValueError, 'got uint8 (2, 64, 64, 3)'),
    Case('a missing file', lambda d, t: d.predict(t/'missing.png'), DataError, 'missing.png: expected a readable image file'),
    Case('a file that is no image', lambda d, t: (t/'a.png').write_text('text') and d.predict(t/'a.png'), DataError, 'a.png: expected a readable image file'),
    Case('an image too small', lambda d, t: d.predict(Image.new('RGB', (8, 8))), ValueError, 'image is 8 x 8 pixels; expected at least 32 px on its short side'),
    Case('a number', lambda d, t: d.predict(3), TypeError, 'x: expected an image (a path, a PIL image, a uint8 numpy array) or a list of them, got int'),
    Case('a list of tensors', lambda d, t: d.predict([x_of(d)[0], x_of(d)[0]]), TypeError, 'x[0]: expected an image (a path, a PIL image, a uint8 numpy array), got Tensor; a list of tensors goes in as one batch: torch.stack(x)'),
    Case('an empty list', lambda d, t: d.predict([]), ValueError, 'x: expected at least one image, got an empty list'),
    # score_images reads files, one path or many
    Case('score_images of one path', lambda d, t: list(score_images(d, str(GOOD), progress=False, engine='torch')), check=lambda d, r: decided(r, 1)),
    Case('score_images of a PIL image', lambda d, t: list(score_images(d, Image.open(GOOD), progress=False)), TypeError, 'paths: expected an image file path or a list of them, got'),
    # decisions: a NaN score is none
    Case('flags of NaN', lambda d, t: d.flags([0.1, float('nan')]), ValueError, 'scores: 1 of 2 are not finite numbers'),
    Case('normalize of inf', lambda d, t: d.normalize([float('inf')]), ValueError, 'a NaN or infinite score is no decision'),
    Case('rates at the threshold of NaN scores', lambda d, t: rates_at_threshold(d, [0, 1], [float('nan'), 1.]), ValueError, 'scores: 1 of 2 are not finite numbers'),
    Case("the engines' rule on NaN", lambda d, t: Normalise(d)(torch.tensor([float('nan')]))[1].tolist(), check=lambda d, r: r == [True] or pytest.fail(f'NaN passed as good: {r}')),
    # constructors and fit
    Case('a typo in a parameter', lambda d, t: PatchCoreDetector(corset=0.5), TypeError, 'PatchCoreDetector: unknown argument corset (did you mean coreset?); expected one of backbone, pre'),
    Case('an unknown parameter', lambda d, t: KNNDetector(neighbours=3), TypeError, 'KNNDetector: unknown argument neighbours; expected one of backbone, pre, k, k_map'),
    Case('predict before fit', lambda d, t: KNNDetector(pre=Preprocess(64), device='cpu').predict(GOOD), RuntimeError, 'this KNNDetector is not fitted: call fit(dataset)'),
    Case('fit on a path that does not exist', lambda d, t: KNNDetector(device='cpu').fit(t/'nowhere'), DataError, 'nowhere: expected a dataset'),
    Case('fit on a number', lambda d, t: KNNDetector(device='cpu').fit(7), TypeError, 'ds: expected an AnomalyDataset, a dataset path or a list of good image paths, got int'),
    # datasets from Python
    Case('test paths without labels', lambda d, t: paths_dataset([GOOD, GOOD], [GOOD]), ValueError, 'labels: expected one label (0 good, 1 anomalous) per test path (1), got None'),
    Case('a DataFrame without a path column', lambda d, t: dataframe_dataset(pd.DataFrame(dict(split=['train'], label=[0]))), DataError, "df: missing column 'image' (path_col); found split, label"),
]


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_api_misuse(case, det, tmp_path):
    if case.error:
        with pytest.raises(case.error) as e: case.call(det, tmp_path)
        assert case.message in str(e.value), f'{case.id}: expected a message with {case.message!r}, got {e.value}'
    else: case.check(det, case.call(det, tmp_path))


def test_metric_names_say_their_threshold(det):
    "`evaluate_detector`: the saved threshold's rates, and the best point on the test labels named as such."
    m, _ = evaluate_detector(det, DS, progress=False, engine='torch')
    assert {'tpr_at_threshold', 'tnr_at_threshold', 'youden_threshold', 'youden_tpr', 'youden_tnr'} <= set(m), m
    assert not {'threshold', 'tpr', 'tnr'} & set(m), m
