"""Fixtures of the MMPose tests: the 5-image MPII sample with a headbox file."""
import os.path as osp

import pytest

pytest.importorskip('mmpose')


@pytest.fixture(scope='session')
def mpii(mpii_sample_dir, tmp_path_factory):
    """Paths of the MPII sample: data_root, ann_file (relative), headbox file."""
    from gst_mm.utils import register_all_modules
    from gst_mm.utils.mpii import write_mpii_headboxes
    register_all_modules(init_default_scope=True)
    tmp = tmp_path_factory.mktemp('mpii')
    ann = osp.join(mpii_sample_dir, 'annotations', 'mpii_sample.json')
    headbox = write_mpii_headboxes(ann, str(tmp / 'headboxes.mat'))
    return dict(data_root=mpii_sample_dir + '/', ann_file='annotations/mpii_sample.json',
                img_prefix='images/', headbox_file=headbox, tmp=str(tmp))


@pytest.fixture(scope='session')
def registered():
    """gst_mm and MMPose components registered (no data needed)."""
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return True


@pytest.fixture(scope='session')
def headbox_writer():
    """:func:`gst_mm.utils.mpii.write_mpii_headboxes` (an MPII-style
    ``mpii_gt_val.mat`` from an annotation file)."""
    from gst_mm.utils.mpii import write_mpii_headboxes
    return write_mpii_headboxes
