"""Converters of public crowd-counting data sets into the gst_mm layout.

Pure package (numpy, OpenCV, scipy, json and the image reader of
:mod:`gst_mm.splatting.image_io`; no mmengine). The command lines in
``tools/dataset_converters/`` are thin wrappers around it.

Every converter does the same three steps (``docs/datasets.md``):

1. list the source samples of a data set (``list_<format>(root)`` ->
   :class:`SourceSample`: output name, source split, image and annotation file);
2. read each annotation with the format's reader (``read_<format>(path)`` ->
   points ``(N, 2)`` (x, y) px and optional covariances ``(N, 2, 2)`` px^2) and
   :func:`convert_sample`: clean the points (clip within a tolerance, drop
   further out, warn naming the file), resize the image so its short side lies in
   ``[min_short, max_short]`` (method.md 6) with points and covariances scaled,
   write ``images/<name>.jpg`` and ``annotations/<name>.json`` atomically;
3. write ``train.txt`` / ``val.txt`` / ``test.txt`` and a
   ``conversion_report.json``.

A sample that cannot be read (missing, corrupt or truncated image or annotation
file) is reported with a message naming the file and skipped; it never aborts
the run.

Source coordinates are taken as they are stored (as in the published
preprocessing code of BL / DM-Count); the data sets' sub-pixel conventions
differ by at most half a pixel, far below the stride-8 density grid.

Modules: one per data set (:mod:`.shanghaitech`, :mod:`.ucf_qnrf`,
:mod:`.jhu_crowd`, :mod:`.nwpu_crowd`: its reader and lister), :mod:`.common`
(:class:`SourceSample`, shared helpers), :mod:`.convert` (one sample) and
:mod:`.run` (a whole data set).
"""
from .common import IMAGE_EXTENSIONS, PointsAndCov, SourceSample
from .convert import (
    READERS,
    ConvertedSample,
    ConvertOptions,
    SampleResult,
    convert_sample,
    convert_source_sample,
)
from .jhu_crowd import list_jhu_crowd, read_jhu_crowd_txt
from .nwpu_crowd import list_nwpu_crowd, read_nwpu_crowd_json
from .run import (
    LISTERS,
    ConversionSummary,
    assign_splits,
    convert_dataset,
    convert_samples,
    summarize,
)
from .shanghaitech import list_shanghaitech, read_shanghaitech_mat
from .ucf_qnrf import list_ucf_qnrf, read_ucf_qnrf_mat

__all__ = [
    'IMAGE_EXTENSIONS', 'PointsAndCov', 'SourceSample', 'READERS', 'LISTERS',
    'read_shanghaitech_mat', 'read_ucf_qnrf_mat', 'read_jhu_crowd_txt', 'read_nwpu_crowd_json',
    'list_shanghaitech', 'list_ucf_qnrf', 'list_jhu_crowd', 'list_nwpu_crowd',
    'ConvertedSample', 'ConvertOptions', 'SampleResult', 'convert_sample',
    'convert_source_sample', 'ConversionSummary', 'convert_samples', 'assign_splits',
    'summarize', 'convert_dataset',
]
