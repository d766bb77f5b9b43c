"""Train 1 iteration -> save -> resume -> test from the checkpoint (torch >= 2.6).

MMEngine 0.10.7 checkpoints hold numpy arrays and HistoryBuffers that
``torch.load(weights_only=True)`` rejects; gst_mm's loader allow-lists them.
"""
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from mmengine.dataset import BaseDataset  # noqa: E402
from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402

import gst_mm  # noqa: E402,F401
from gst_mm.registry import DATASETS, METRICS, MODELS  # noqa: E402


@MODELS.register_module(force=True)
class _ToyRegressor(BaseModel):
    """y = w x + b fitted by MSE (predict returns |error|)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor', **kwargs):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        y = torch.stack(data_samples) if isinstance(data_samples, (list, tuple)) else data_samples
        out = self.fc(x)
        if mode == 'loss':
            return dict(loss_mse=((out - y) ** 2).mean())
        if mode == 'predict':
            return [dict(err=float((o - t).abs().sum())) for o, t in zip(out, y)]
        return out


@DATASETS.register_module(force=True)
class _ToyDataset(BaseDataset):
    METAINFO = dict(flip_indices=np.arange(4), sigmas=np.linspace(0.1, 0.4, 4))

    def load_data_list(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, 2)).astype(np.float32)
        y = (x @ np.array([[1.5], [-2.0]], np.float32) + 0.5).astype(np.float32)
        return [dict(inputs=torch.from_numpy(a), data_samples=torch.from_numpy(b))
                for a, b in zip(x, y)]


@METRICS.register_module(force=True)
class _ToyMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(s['err'] for s in data_samples)

    def compute_metrics(self, results):
        return dict(mae=float(np.mean(results)))


def _write_config(path, max_iters):
    loader = ("dict(batch_size=4, num_workers=0, dataset=dict(type='_ToyDataset'), "
              "sampler=dict(type='DefaultSampler', shuffle=False), "
              "collate_fn=dict(type='default_collate'))")
    path.write_text(textwrap.dedent(f"""
        default_scope = 'gst_mm'
        model = dict(type='_ToyRegressor')
        train_dataloader = {loader}
        val_dataloader = {loader}
        test_dataloader = {loader}
        val_evaluator = dict(type='_ToyMetric')
        test_evaluator = val_evaluator
        train_cfg = dict(by_epoch=False, max_iters={max_iters}, val_interval=1000)
        val_cfg = dict()
        test_cfg = dict()
        optim_wrapper = dict(optimizer=dict(type='Adam', lr=0.01))
        default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                             logger=dict(type='LoggerHook', interval=1))
        randomness = dict(seed=0)
        log_level = 'WARNING'
    """))




def test_train_save_resume_test_roundtrip(tmp_path, monkeypatch, load_tool):
    from gst_mm.utils.checkpoint import load_local_checkpoint

    train_tool, test_tool = load_tool('train'), load_tool('test')
    work_dir = tmp_path / 'work'
    cfg1 = tmp_path / 'toy_1iter.py'
    _write_config(cfg1, max_iters=1)
    train_tool.main([str(cfg1), '--work-dir', str(work_dir)])
    ckpt = work_dir / 'iter_1.pth'
    assert ckpt.is_file()

    # The trap is real: plain weights_only loading rejects this checkpoint ...
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt))
    with pytest.raises(Exception):
        torch.load(str(ckpt), weights_only=True)
    # ... and gst_mm's allow-list loads it without falling back to full pickle.
    monkeypatch.setenv('GST_MM_STRICT_CHECKPOINTS', '1')
    state = load_local_checkpoint(str(ckpt), map_location='cpu')
    assert state['meta']['iter'] == 1
    np.testing.assert_allclose(state['meta']['dataset_meta']['sigmas'], np.linspace(0.1, 0.4, 4))

    # resume (latest checkpoint of the work dir) and train one more iteration
    cfg2 = tmp_path / 'toy_2iter.py'
    _write_config(cfg2, max_iters=2)
    train_tool.main([str(cfg2), '--work-dir', str(work_dir), '--resume'])
    resumed = load_local_checkpoint(str(work_dir / 'iter_2.pth'), map_location='cpu')
    assert resumed['meta']['iter'] == 2
    w1 = state['state_dict']['fc.weight']
    w2 = resumed['state_dict']['fc.weight']
    assert not torch.equal(w1, w2)  # it really trained after resuming
    # the optimiser state came back too: Adam counted both steps
    assert float(state['optimizer']['state'][0]['step']) == 1
    assert float(resumed['optimizer']['state'][0]['step']) == 2

    # test from the checkpoint through tools/test.py; the metric equals a
    # direct evaluation of the saved weights
    metrics = test_tool.main([str(cfg2), str(work_dir / 'iter_2.pth'),
                              '--work-dir', str(tmp_path / 'test')])
    ds = _ToyDataset()
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    x = torch.stack([d['inputs'] for d in infos])
    y = torch.stack([d['data_samples'] for d in infos])
    pred = x @ w2.T + resumed['state_dict']['fc.bias']
    expected = float((pred - y).abs().sum(1).mean())
    assert metrics['mae'] == pytest.approx(expected, rel=1e-5)


def test_missing_checkpoint_names_file(tmp_path):
    from gst_mm.utils.checkpoint import load_local_checkpoint

    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))
