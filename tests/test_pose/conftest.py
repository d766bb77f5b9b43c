"""Fixtures of the MMPose tests: the 5-image MPII sample with a headbox file."""
import os.path as osp

import numpy as np
import pytest

pytest.importorskip('mmpose')


def write_headboxes(ann_file: str, out_file: str) -> str:
    """MPII-style ``headboxes_src (2, 2, N)`` from the neck (8) and head-top (9)
    joints of each annotation (the sample ships without MPII's ``mpii_gt_val.mat``)."""
    import json

    from scipy.io import savemat
    anns = json.load(open(ann_file))
    boxes = np.zeros((2, 2, len(anns)), np.float64)
    for i, ann in enumerate(anns):
        j = np.asarray(ann['joints'], np.float64)
        boxes[:, :, i] = np.stack([j[8], j[9]])
    savemat(out_file, {'headboxes_src': boxes})
    return out_file


@pytest.fixture(scope='session')
def mpii(mpii_sample_dir, tmp_path_factory):
    """Paths of the MPII sample: data_root, ann_file (relative), headbox file."""
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    tmp = tmp_path_factory.mktemp('mpii')
    ann = osp.join(mpii_sample_dir, 'annotations', 'mpii_sample.json')
    headbox = write_headboxes(ann, str(tmp / 'headboxes.mat'))
    return dict(data_root=mpii_sample_dir + '/', ann_file='annotations/mpii_sample.json',
                img_prefix='images/', headbox_file=headbox, tmp=str(tmp))


@pytest.fixture(scope='session')
def registered():
    """gst_mm and MMPose components registered (no data needed)."""
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return True
