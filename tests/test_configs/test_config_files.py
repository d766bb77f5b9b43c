"""Every shipped config parses and names only registered components."""
import glob
import os.path as osp

import pytest

pytest.importorskip('mmpose')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from gst_mm.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS  # noqa: E402
from gst_mm.utils import register_all_modules  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def _resolve(registry, type_name, where):
    assert registry.get(type_name) is not None, f'{where}: {type_name!r} is not registered'


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, REPO) for p in CONFIGS])
def test_config_components_are_registered(path):
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(path)
    name = osp.relpath(path, REPO)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = cfg.model
        _resolve(MODELS, model['type'], name)
        for key in ('backbone', 'head', 'loss'):
            if isinstance(model.get(key), dict):
                _resolve(MODELS, model[key]['type'], f'{name} model.{key}')
        for split in ('train', 'val', 'test'):
            loader = cfg.get(f'{split}_dataloader')
            if not loader:
                continue
            dataset = loader['dataset']
            _resolve(DATASETS, dataset['type'], f'{name} {split} dataset')
            for step in dataset.get('pipeline', []):
                _resolve(TRANSFORMS, step['type'], f'{name} {split} pipeline')
        for hook in cfg.get('custom_hooks', []) or []:
            _resolve(HOOKS, hook['type'], f'{name} custom_hooks')
        evaluator = cfg.get('val_evaluator')
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            _resolve(METRICS, metric['type'], f'{name} val_evaluator')


def test_every_counting_dataset_has_gst_and_all_baselines():
    names = {osp.basename(p) for p in CONFIGS}
    for dataset in ('shha', 'shhb', 'qnrf', 'jhu', 'nwpu', 'synthetic'):
        for method in ('gst', 'gst-heuristic', 'l2', 'bl', 'dmcount', 'uot'):
            assert f'{method}_vgg19_{dataset}.py' in names
