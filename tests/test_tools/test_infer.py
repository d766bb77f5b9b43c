"""tools/infer.py: counts for the synthetic test images equal tools/test.py's, a plain
folder of JPEGs (no annotations) works, an unreadable file is skipped with one line."""
import csv
import os
import os.path as osp
import shutil

import numpy as np
import pytest


@pytest.fixture
def tiny_model(tiny_crowd, tmp_path):
    """The tiny L2 counter dumped to a config file, with a checkpoint whose weights
    give non-trivial densities (the initial weights, output made positive)."""
    from tiny_configs import tiny_counter_files
    _, cfg_file, ckpt, data_root = tiny_counter_files(tiny_crowd, tmp_path, bias_shift=0.5)
    return cfg_file, ckpt, data_root


def _counts(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {osp.basename(r['image']): float(r['count']) for r in rows}


def test_counts_equal_tools_test(tiny_model, tmp_path, load_tool):
    from gst_mm.evaluation.prediction_files import read_predictions
    cfg_file, ckpt, data_root = tiny_model
    pred_file = str(tmp_path / 'preds.csv')
    load_tool('test').main([cfg_file, ckpt, '--work-dir', str(tmp_path / 'w'), '--pred-file',
                            pred_file])
    expected = {osp.basename(r['img_path']): r['pred_count'] for r in read_predictions(pred_file)}
    assert expected and max(expected.values()) > 0
    out = str(tmp_path / 'out')
    rc = load_tool('infer').main([cfg_file, ckpt, *[osp.join(data_root, 'images', k)
                                                    for k in sorted(expected)],
                                  '--out-dir', out])
    assert rc == 0
    got = _counts(osp.join(out, 'counts.csv'))
    assert sorted(got) == sorted(expected)
    for name, count in got.items():
        assert count == pytest.approx(expected[name], rel=1e-6, abs=1e-6)
        assert osp.getsize(osp.join(out, osp.splitext(name)[0] + '_density.png')) > 0


def test_plain_folder_and_an_unreadable_file(tiny_model, tmp_path, load_tool, capsys):
    from gst_mm.splatting import read_image
    cfg_file, ckpt, data_root = tiny_model
    folder = tmp_path / 'mine'
    folder.mkdir()
    names = sorted(os.listdir(osp.join(data_root, 'images')))[:2]
    for n in names:
        shutil.copy(osp.join(data_root, 'images', n), folder / n)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    (folder / 'notes.txt').write_text('not an image, not listed')
    out = str(tmp_path / 'out')
    rc = load_tool('infer').main([cfg_file, ckpt, str(folder), '--out-dir', out])
    assert rc == 1  # one image skipped
    err = [ln for ln in capsys.readouterr().err.splitlines() if 'infer.py' in ln]
    assert len(err) == 1 and 'skipped' in err[0] and 'broken.jpg' in err[0], err
    got = _counts(osp.join(out, 'counts.csv'))
    assert sorted(got) == names and all(np.isfinite(v) for v in got.values())
    fig = read_image(osp.join(out, osp.splitext(names[0])[0] + '_density.png'))
    assert fig.shape[1] > fig.shape[0]  # image and density side by side
    # a missing input is one line, exit 2
    with pytest.raises(SystemExit) as exc:
        load_tool('infer').main([cfg_file, ckpt, str(tmp_path / 'nowhere'), '--out-dir', out])
    assert exc.value.code == 2
