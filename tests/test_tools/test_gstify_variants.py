"""tools/benchmark/pose.py --gstify-variant: a gstified version with recipe overrides is
written with those fields, named by them, and reported beside the default version."""
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SRC = 'mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_mobilenetv2_8xb64-210e_mpii-256x256.py'


@pytest.fixture
def bench(monkeypatch):
    pytest.importorskip('mmpose')
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools', 'benchmark'))
    import pose_gstify
    import pose_report
    return pose_gstify, pose_report


def test_variant_config_carries_its_fields(bench, tmp_path):
    from mmengine.config import Config
    pose_gstify, _ = bench
    assert pose_gstify.variant_kind(None) == 'gst'
    kind = pose_gstify.variant_kind({'mse_warmup_iters': 100})
    assert kind == 'gst-mse_warmup_iters100'
    plain = Config.fromfile(pose_gstify._source_config(SRC, 'gst', 'm', str(tmp_path)))
    warm = Config.fromfile(pose_gstify._source_config(SRC, kind, 'm', str(tmp_path),
                                                      {'mse_warmup_iters': 100}))
    assert plain.model.head.mse_warmup_iters == 0
    assert warm.model.head.mse_warmup_iters == 100
    # everything else of the head is the default recipe's
    rest = {k: v for k, v in warm.model.head.items() if k != 'mse_warmup_iters'}
    assert rest == {k: v for k, v in plain.model.head.items() if k != 'mse_warmup_iters'}


def test_report_has_one_row_per_version(bench):
    _, pose_report = bench
    runs = [dict(src=SRC, kind=k, seed=0, PCKh=p, PCKh01=q, step_s=s)
            for k, p, q, s in (('mse', 0.6, 0.1, 2.0), ('gst', 0.4, 0.1, 2.0),
                               ('gst-mse_warmup_iters100', 0.55, 0.08, 2.2))]
    record = dict(runs=runs, machine='m', load='l', iters=300, seeds=[0], wall_s=60.0)
    lines = pose_report.gstify_lines(record, [SRC], 2, '', ['gst', 'gst-mse_warmup_iters100'])
    rows = [ln for ln in lines if ln.startswith(f'| `{SRC}`')]
    assert len(rows) == 2
    assert '| gst |' in rows[0] and '40.0' in rows[0] and '60.0' in rows[0]
    assert '| gst-mse_warmup_iters100 |' in rows[1] and '55.0' in rows[1]
    assert rows[1].endswith('| 1.10 |')
