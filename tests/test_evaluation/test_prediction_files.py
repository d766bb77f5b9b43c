"""Per-image prediction files and the NWPU-Crowd submission: written by CountingMetric /
tools/test.py, read back by gst_mm.evaluation.prediction_files."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from tiny_configs import tiny_counter_files  # noqa: E402

from gst_mm.evaluation import CountingMetric  # noqa: E402
from gst_mm.evaluation.prediction_files import (  # noqa: E402
    PREDICTION_COLUMNS,
    nwpu_image_id,
    read_nwpu_submission,
    read_predictions,
    write_nwpu_submission,
    write_predictions,
)

SAMPLES = [  # counts that a 4-decimal format would not keep exactly
    dict(img_id='test_3610', img_path='data/nwpu/images/test_3610.jpg',
         pred_count=123.456789012345, gt_count=120.0),
    dict(img_id='test_3612', img_path='data/nwpu/images/test_3612.jpg',
         pred_count=3.0e-05, gt_count=0.0),
    dict(img_id='test_3611', img_path='data/nwpu/images/test_3611.jpg',
         pred_count=1.0 / 3.0, gt_count=2.0),
]


def _metric_files(tmp_path, ext, **kwargs):
    out = str(tmp_path / 'sub' / f'preds.{ext}')
    sub = str(tmp_path / 'nwpu.txt')
    metric = CountingMetric(out_file=out, nwpu_submission=sub, **kwargs)
    metric.process({}, [dict(s) for s in SAMPLES])
    return metric.compute_metrics(metric.results), out, sub


@pytest.mark.parametrize('ext', ['csv', 'json'])
def test_metric_files_round_trip_exactly(tmp_path, ext):
    metrics, out, sub = _metric_files(tmp_path, ext)
    rows = read_predictions(out)
    assert [r['image_id'] for r in rows] == [s['img_id'] for s in SAMPLES]  # eval order
    for row, s in zip(rows, SAMPLES):
        assert row['img_path'] == s['img_path']
        assert row['pred_count'] == s['pred_count'] and row['gt_count'] == s['gt_count']
        assert row['abs_error'] == abs(s['pred_count'] - s['gt_count'])
    errors = np.array([r['abs_error'] for r in rows])
    assert metrics['MAE'] == pytest.approx(errors.mean())
    assert metrics['MSE'] == pytest.approx(np.sqrt((errors ** 2).mean()))
    if ext == 'json':
        with open(out) as f:
            assert json.load(f)['metrics'] == pytest.approx(metrics)
    # NWPU: ids from the names, ascending, counts exact
    assert read_nwpu_submission(sub) == {3610: SAMPLES[0]['pred_count'],
                                         3611: SAMPLES[2]['pred_count'],
                                         3612: SAMPLES[1]['pred_count']}
    with open(sub) as f:
        lines = f.read().splitlines()
    assert lines[0] == '3610 123.456789012345' and lines[2] == '3612 0.00003'
    assert [ln.split()[0] for ln in lines] == ['3610', '3611', '3612']
    # nothing but the two files (no temporary files left behind)
    assert sorted(os.listdir(osp.dirname(out))) == [osp.basename(out)]


def test_csv_layout(tmp_path):
    _, out, _ = _metric_files(tmp_path, 'csv')
    with open(out) as f:
        lines = f.read().splitlines()
    assert lines[0] == ','.join(PREDICTION_COLUMNS)
    assert lines[2] == 'test_3612,data/nwpu/images/test_3612.jpg,0,0.00003,0.00003'


def test_metric_with_data_samples_takes_names_from_metainfo(tmp_path):
    from mmengine.evaluator import Evaluator

    from gst_mm.structures import CountingDataSample

    out = str(tmp_path / 'p.csv')
    evaluator = Evaluator(CountingMetric(out_file=out))
    samples = []
    for name, pred, gt in (('syn_00004', 3.5, 4.0), ('syn_00007', 7.25, 5.0)):
        s = CountingDataSample(metainfo=dict(img_id=name, img_path=f'/d/images/{name}.jpg'))
        s.pred_count = pred
        s.gt_count = gt
        samples.append(s)
    evaluator.process(samples)
    evaluator.evaluate(2)
    rows = read_predictions(out)
    assert [(r['image_id'], r['img_path'], r['pred_count'], r['gt_count']) for r in rows] == [
        ('syn_00004', '/d/images/syn_00004.jpg', 3.5, 4.0),
        ('syn_00007', '/d/images/syn_00007.jpg', 7.25, 5.0)]


def test_writes_replace_atomically_and_a_failed_write_keeps_the_old_file(tmp_path):
    out = str(tmp_path / 'p.json')
    write_predictions(out, [dict(image_id='a', img_path='', gt_count=1, pred_count=2)])
    before = open(out).read()
    with pytest.raises(ValueError):  # a record that cannot be written
        write_predictions(out, [dict(image_id='a', img_path='', gt_count=1,
                                     pred_count='not a number')])
    assert open(out).read() == before
    with pytest.raises(ValueError, match='two images with id 3610'):
        write_nwpu_submission(str(tmp_path / 's.txt'),
                              [dict(image_id='val_3610', pred_count=1.0),
                               dict(image_id='test_3610', pred_count=2.0)])
    assert sorted(os.listdir(tmp_path)) == ['p.json']


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'p\.txt' must end in \.csv or \.json"):
        CountingMetric(out_file='p.txt')
    with pytest.raises(ValueError, match="cannot derive an NWPU-Crowd image id from 'crowd_a'"):
        nwpu_image_id('crowd_a')
    assert nwpu_image_id('test_3610') == nwpu_image_id('images/3610.jpg') == '3610'
    bad = tmp_path / 'sub.txt'
    bad.write_text('3610 12.5\n3611 x\n')
    with pytest.raises(ValueError, match=r'sub\.txt:2: expected "<image id> <count>"'):
        read_nwpu_submission(str(bad))
    bad.write_text('3610 12.5\n3610 1\n')
    with pytest.raises(ValueError, match='3610 appears twice'):
        read_nwpu_submission(str(bad))
    csv_file = tmp_path / 'p.csv'
    csv_file.write_text('name,count\na,1\n')
    with pytest.raises(ValueError, match='expected the columns image_id,img_path'):
        read_predictions(str(csv_file))


# ------------------------------------------------------------------ tools/test.py end to end
@pytest.fixture
def tiny_run(tiny_crowd, tmp_path):
    """The tiny L2 config dumped to a file and a checkpoint of its initialised model."""
    return tiny_counter_files(tiny_crowd, tmp_path)


def _independent_predictions(cfg, ckpt):
    """Predicted count per image id from the model's own test_step."""
    from mmengine.runner import Runner

    cfg = cfg.copy()
    cfg.load_from = ckpt
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    runner.model.eval()
    out = {}
    with torch.no_grad():
        for batch in runner.test_dataloader:
            for s in runner.model.test_step(batch):
                out[s.metainfo['img_id']] = (float(s.pred_count), float(s.gt_count))
    return out


def test_tools_test_writes_both_files(tiny_run, tmp_path, load_tool):
    cfg, cfg_file, ckpt, data_root = tiny_run
    pred_file = str(tmp_path / 'out' / 'preds.json')
    nwpu_file = str(tmp_path / 'out' / 'submission.txt')
    metrics = load_tool('test').main([cfg_file, ckpt, '--work-dir', str(tmp_path / 'w1'),
                                  '--pred-file', pred_file, '--nwpu-submission', nwpu_file])
    rows = read_predictions(pred_file)
    with open(osp.join(data_root, 'test.txt')) as f:
        names = [ln.strip() for ln in f if ln.strip()]
    assert sorted(r['image_id'] for r in rows) == sorted(names)
    expected = _independent_predictions(cfg, ckpt)
    for r in rows:
        pred, gt = expected[r['image_id']]
        with open(osp.join(data_root, 'annotations', r['image_id'] + '.json')) as f:
            assert r['gt_count'] == gt == len(json.load(f)['points'])
        assert r['pred_count'] == pytest.approx(pred, rel=1e-6)
        assert osp.basename(r['img_path']) == r['image_id'] + '.jpg'
    errors = np.array([r['abs_error'] for r in rows])
    assert metrics['MAE'] == pytest.approx(errors.mean())
    assert metrics['MSE'] == pytest.approx(np.sqrt((errors ** 2).mean()))
    sub = read_nwpu_submission(nwpu_file)
    assert sub == {int(nwpu_image_id(r['image_id'])): r['pred_count'] for r in rows}


def test_tools_test_cfg_options_and_errors(tiny_run, tmp_path, load_tool):
    cfg, cfg_file, ckpt, _ = tiny_run
    pred_file = str(tmp_path / 'preds.csv')
    metrics = load_tool('test').main([cfg_file, ckpt, '--work-dir', str(tmp_path / 'w2'),
                                  '--cfg-options', f'test_evaluator.out_file={pred_file}'])
    rows = read_predictions(pred_file)
    assert metrics['MAE'] == pytest.approx(np.mean([r['abs_error'] for r in rows]))
    with pytest.raises(SystemExit, match=r"--pred-file: prediction file 'p\.txt' must end"):
        load_tool('test').main([cfg_file, ckpt, '--pred-file', 'p.txt'])
    no_metric = str(tmp_path / 'no_metric.py')
    d = cfg.copy()
    d.test_evaluator = dict(type='DumpResults', out_file_path=str(tmp_path / 'r.pkl'))
    d.dump(no_metric)
    with pytest.raises(SystemExit, match="test_evaluator has no CountingMetric"):
        load_tool('test').main([no_metric, ckpt, '--nwpu-submission', str(tmp_path / 's.txt')])
