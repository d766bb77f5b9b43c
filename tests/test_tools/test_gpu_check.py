"""tools/benchmark/gpu.py --quick runs on a CPU-only machine (so the GPU check cannot rot)
and writes the JSON its docs describe."""
import json
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_gpu_check_quick_on_cpu(tmp_path, monkeypatch):
    script = osp.join(REPO, 'tools', 'benchmark', 'gpu.py')
    monkeypatch.setattr(sys, 'argv', [script, '--quick', '--device', 'cpu', '--out-dir',
                                      str(tmp_path)])
    monkeypatch.syspath_prepend(osp.dirname(script))
    runpy.run_path(script, run_name='__main__')
    record = json.load(open(tmp_path / 'gpu_check.json'))
    assert set(record) >= {'env', 'fits', 'agreement', 'losses', 'pose', 'seconds'}
    fitted = [f for f in record['fits'] if 'skipped' not in f]
    assert {f['renderer'] for f in fitted} == {'torch-sum (cpu)', 'cpu-sum'}
    assert all(0 < f['std_rel_err'] < 0.5 and f['iterations'] > 0 for f in fitted)
    gs = [f for f in record['fits'] if f['renderer'] == 'gsplat-alpha']
    assert gs and 'skipped' in gs[0]  # no CUDA here: said, not crashed
    a = next(iter(record['agreement'].values()))
    assert a['std_rel_diff_max'] == 0.0  # the same device: the same fit
    loss = record['losses'][0]
    assert loss['gst_step_s'] > 0 and loss['dmcount_step_s'] > 0
    assert record['pose'].get('ratio', 0) > 0, record['pose']
    assert (tmp_path / 'gpu_check.md').read_text().startswith('GPU check on cpu')
