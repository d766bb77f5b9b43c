"""Per-image prediction files and the NWPU-Crowd submission file: writers and readers.

Two formats, both written atomically (a temporary file in the target folder, then
``os.replace``), so an interrupted run never leaves a half-written file:

* **Per-image predictions** (:func:`write_predictions` / :func:`read_predictions`),
  by extension:

  - ``.csv``: header ``image_id,img_path,gt_count,pred_count,abs_error``, one row per
    image in evaluation order; counts as shortest round-trip decimals, so reading
    gives back the written floats exactly.
  - ``.json``: ``{"format": "gst_mm.counting_predictions", "version": 1,
    "metrics": {...}, "images": [{"image_id", "img_path", "gt_count", "pred_count",
    "abs_error"}, ...]}`` (``metrics``: the data set's MAE, MSE, ... when given).

  ``image_id`` is the data set's name of the image (``img_id``, e.g. ``test_3610``),
  ``img_path`` its file, ``abs_error = |pred_count - gt_count|``.

* **NWPU-Crowd submission** (:func:`write_nwpu_submission` /
  :func:`read_nwpu_submission`): one line per image, ``<image id> <predicted count>``
  separated by one space, ids ascending, e.g. ``3610 123.4567``. This is what the
  official sample code writes (gjy3035/NWPU-Crowd-Sample-Code ``test.py``:
  ``print(f'{filename} {pred:.4f}')``) and what the benchmark's judge parses
  (``misc/evaluation_code.py``, ``readoutput``: ``int(line[0]), float(line[1])``; a
  test id missing from the file makes the submission fail). The image id is the
  NWPU file stem: the trailing digits of the image name (``test_3610`` as written by
  ``tools/dataset_converters/nwpu_crowd.py``, or ``3610.jpg``). Counts are written in
  fixed-point notation with the shortest digits that round-trip.
"""
from __future__ import annotations

import csv
import json
import math
import os
import os.path as osp
import re
import tempfile
from typing import Any, Dict, Iterable, List, Mapping, Optional

import numpy as np

#: Columns of the per-image CSV, in order.
PREDICTION_COLUMNS = ('image_id', 'img_path', 'gt_count', 'pred_count', 'abs_error')
#: ``format`` tag of the per-image JSON.
JSON_FORMAT = 'gst_mm.counting_predictions'
_NUMBER_COLUMNS = ('gt_count', 'pred_count', 'abs_error')


def prediction_format(path: str) -> str:
    """``'csv'`` or ``'json'`` from the extension of ``path`` (case-insensitive).

    Raises:
        ValueError: one line naming the path when the extension is neither.
    """
    ext = osp.splitext(str(path))[1].lower()
    if ext not in ('.csv', '.json'):
        raise ValueError(f'prediction file {path!r} must end in .csv or .json')
    return ext[1:]


def _number(value: float) -> str:
    """Shortest positional decimal that reads back as the same float (no exponent)."""
    value = float(value)
    if not math.isfinite(value):
        return repr(value)
    return np.format_float_positional(value, unique=True, trim='-')


def _atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, 'w', newline='') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _records(records: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    out = []
    for r in records:
        gt, pred = float(r['gt_count']), float(r['pred_count'])
        out.append(dict(image_id=str(r['image_id']), img_path=str(r.get('img_path') or ''),
                        gt_count=gt, pred_count=pred, abs_error=abs(pred - gt)))
    return out


def write_predictions(path: str, records: Iterable[Mapping[str, Any]],
                      metrics: Optional[Mapping[str, float]] = None) -> str:
    """Write per-image predictions to ``path`` (``.csv`` or ``.json``), atomically.

    Args:
        path: output file; its folder is created.
        records: per image ``image_id``, ``img_path`` (may be empty), ``gt_count``,
            ``pred_count``; ``abs_error`` is recomputed.
        metrics: data-set metrics stored in the JSON file (ignored for CSV).

    Returns:
        ``path``.
    """
    fmt = prediction_format(path)
    rows = _records(records)

    def write_csv(f) -> None:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(PREDICTION_COLUMNS)
        for r in rows:
            writer.writerow([r['image_id'], r['img_path']]
                            + [_number(r[k]) for k in _NUMBER_COLUMNS])

    def write_json(f) -> None:
        doc = dict(format=JSON_FORMAT, version=1,
                   metrics={k: float(v) for k, v in (metrics or {}).items()}, images=rows)
        json.dump(doc, f, indent=1)
        f.write('\n')

    _atomic_write(path, write_csv if fmt == 'csv' else write_json)
    return path


def read_predictions(path: str) -> List[Dict[str, Any]]:
    """Read a file of :func:`write_predictions`: one dict per image with
    ``image_id`` (str), ``img_path`` (str), ``gt_count``, ``pred_count``,
    ``abs_error`` (float), in file order.

    Raises:
        ValueError: one line naming the file and the row for a malformed file.
    """
    fmt = prediction_format(path)
    if fmt == 'json':
        with open(path) as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or doc.get('format') != JSON_FORMAT:
            raise ValueError(f'{path}: not a {JSON_FORMAT} file')
        rows = doc.get('images', [])
    else:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != PREDICTION_COLUMNS:
                raise ValueError(f'{path}: expected the columns {",".join(PREDICTION_COLUMNS)}, '
                                 f'got {",".join(reader.fieldnames or ())}')
            rows = list(reader)
    out = []
    for i, r in enumerate(rows):
        try:
            out.append(dict(image_id=str(r['image_id']), img_path=str(r['img_path']),
                            **{k: float(r[k]) for k in _NUMBER_COLUMNS}))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'{path}: malformed image record {i + 1}: {e}') from None
    return out


_TRAILING_DIGITS = re.compile(r'(\d+)$')


def nwpu_image_id(name: str) -> str:
    """NWPU-Crowd image id of an image name or path: the trailing digits of its stem
    (``test_3610`` -> ``3610``, ``images/3610.jpg`` -> ``3610``).

    Raises:
        ValueError: one line naming ``name`` when its stem does not end in digits.
    """
    stem = osp.splitext(osp.basename(str(name)))[0]
    m = _TRAILING_DIGITS.search(stem)
    if m is None:
        raise ValueError(f'cannot derive an NWPU-Crowd image id from {name!r}: its name does '
                         'not end in digits (NWPU-Crowd ids are the file stems, e.g. '
                         'test_3610 -> 3610)')
    return m.group(1)


def write_nwpu_submission(path: str, records: Iterable[Mapping[str, Any]]) -> str:
    """Write NWPU-Crowd's test-server file: ``<image id> <predicted count>`` per line,
    ids ascending (module docstring), atomically.

    Args:
        path: output file (any extension; the benchmark takes a ``.txt``).
        records: per image ``image_id`` (or ``img_path``) and ``pred_count``.

    Raises:
        ValueError: an image name without an NWPU id, or two images with one id.
    """
    counts: Dict[str, float] = {}
    for r in records:
        name = r.get('image_id') or r.get('img_path')
        image_id = nwpu_image_id(name)
        if image_id in counts:
            raise ValueError(f'NWPU-Crowd submission: two images with id {image_id} '
                             f'(the second is {name!r})')
        counts[image_id] = float(r['pred_count'])

    def write(f) -> None:
        for image_id in sorted(counts, key=int):
            f.write(f'{image_id} {_number(counts[image_id])}\n')

    _atomic_write(path, write)
    return path


def read_nwpu_submission(path: str) -> Dict[int, float]:
    """Read an NWPU-Crowd submission file: ``{image id (int): predicted count}``.

    Stricter than the judge (which skips lines that do not have two fields): every
    non-empty line must be ``<integer id> <number>``, and an id may appear once.

    Raises:
        ValueError: one line naming the file and the line.
    """
    out: Dict[int, float] = {}
    with open(path) as f:
        for k, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ValueError(f'{len(fields)} fields')
                image_id, count = int(fields[0]), float(fields[1])
            except ValueError as e:
                raise ValueError(f'{path}:{k}: expected "<image id> <count>", got '
                                 f'{line.strip()!r} ({e})') from None
            if image_id in out:
                raise ValueError(f'{path}:{k}: image id {image_id} appears twice')
            out[image_id] = count
    return out


__all__ = [
    'PREDICTION_COLUMNS', 'JSON_FORMAT', 'prediction_format', 'write_predictions',
    'read_predictions', 'nwpu_image_id', 'write_nwpu_submission', 'read_nwpu_submission'
]
