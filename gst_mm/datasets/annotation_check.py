"""Name the sample and field of a bad MMPose annotation.

MMPose's data sets parse their JSON with ``np.array(..., dtype=np.float32)``: a joint
written as ``'n/a'`` ends in ``ValueError: could not convert string to float: 'n/a'``
with no file, image or field named. :func:`find_bad_annotation` scans an annotation
file (MPII's list of persons, or COCO's ``annotations`` / ``images``) for the first
numeric field holding something that is not a number, and
:func:`explain_annotation_error` turns such a ``ValueError`` of a config's data sets
into one line naming the file, the sample (its image) and the field.

**Numeric strings** (``"973.0"``) are accepted, as MMPose and numpy accept them (they
convert exactly); only values that are not numbers at all are errors.
"""
from __future__ import annotations

import json
import numbers
import os.path as osp
from typing import Any, Iterable, Optional

#: numeric fields per annotation format (MPII persons; COCO annotations)
NUMERIC_FIELDS = ('joints', 'joints_vis', 'center', 'scale', 'keypoints', 'bbox', 'area',
                  'num_keypoints', 'points')


def _bad_value(value: Any) -> Optional[Any]:
    """The first leaf of ``value`` (nested lists) that is not a number (numeric strings
    count as numbers), else ``None``."""
    if isinstance(value, (list, tuple)):
        return next((bad for bad in map(_bad_value, value) if bad is not None), None)
    if value is None or isinstance(value, numbers.Number):
        return None
    if isinstance(value, str):
        try:
            float(value)
            return None
        except ValueError:
            return value
    return value


def _records(data: Any) -> Iterable[tuple]:
    """``(index, record, image name)`` of an MPII list or a COCO dict."""
    if isinstance(data, list):
        for i, rec in enumerate(data):
            if isinstance(rec, dict):
                yield i, rec, rec.get('image', rec.get('file_name', f'#{i}'))
    elif isinstance(data, dict):
        names = {img.get('id'): img.get('file_name') for img in data.get('images', [])
                 if isinstance(img, dict)}
        for i, rec in enumerate(data.get('annotations', [])):
            if isinstance(rec, dict):
                yield i, rec, names.get(rec.get('image_id'), f"image_id {rec.get('image_id')}")
        for i, rec in enumerate(data.get('images', [])):
            if isinstance(rec, dict):
                yield i, rec, rec.get('file_name', f'#{i}')


def find_bad_annotation(ann_file: str) -> Optional[str]:
    """One line naming the first sample of ``ann_file`` (JSON) whose numeric field holds
    a value that is not a number, or ``None`` (the file reads and every numeric field
    is numeric; unreadable JSON is named too)."""
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return f'{ann_file}: not a readable JSON annotation file ({type(e).__name__}: {e})'
    for i, rec, image in _records(data):
        for key in NUMERIC_FIELDS:
            if key in rec:
                bad = _bad_value(rec[key])
                if bad is not None:
                    return (f'{ann_file}: sample {i} (image {image}): field {key!r} holds '
                            f'{bad!r}, not a number')
    return None


def _ann_files(cfg) -> Iterable[str]:
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader', None)
        ds = (loader or {}).get('dataset', None) or {}
        stack = [ds]
        while stack:
            d = stack.pop()
            if not isinstance(d, dict):
                continue
            ann = d.get('ann_file')
            if isinstance(ann, str) and ann.endswith('.json'):
                root = d.get('data_root') or ''
                yield ann if osp.isabs(ann) or not root else osp.join(root, ann)
            stack.extend(d.get('datasets', []) or [])
            if isinstance(d.get('dataset'), dict):
                stack.append(d['dataset'])


def explain_annotation_error(cfg, err: Exception) -> Optional[str]:
    """For a ``ValueError`` / ``TypeError`` raised while a config's data sets were read:
    the line of :func:`find_bad_annotation` for the first of the config's JSON
    annotation files that has a bad value, else ``None`` (not an annotation error)."""
    if not isinstance(err, (ValueError, TypeError)):
        return None
    for path in dict.fromkeys(_ann_files(cfg)):
        if osp.isfile(path):
            line = find_bad_annotation(path)
            if line is not None:
                return line
    return None
