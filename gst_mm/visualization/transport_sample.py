"""One sample of a crowd config through the transport part of its pipeline (the
transport-map viewer's and the demo's sample), fitting its Gaussians first when asked.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

KERNEL_TYPES = ('LoadTransportKernel', 'gst_mm.LoadTransportKernel')
GAUSSIAN_TYPES = ('LoadCrowdGaussians', 'gst_mm.LoadCrowdGaussians')


def _type(t: Dict) -> str:
    return str(t.get('type', ''))


def transport_pipeline(cfg, source: Optional[str], augment: bool) -> List[Dict]:
    """The config's training pipeline cut to what the transport map needs.

    Keeps loading, (random augmentation only with ``augment``), the Gaussians
    transform (its kernel source switched to ``source``; inserted if the config has
    none, e.g. a baseline) and the kernel transform (inserted if absent); drops the
    pack step.
    """
    steps = [copy.deepcopy(dict(t)) for t in cfg.train_dataloader.dataset.pipeline]
    steps = [t for t in steps if not _type(t).split('.')[-1].startswith('Pack')]
    if not augment:
        steps = [t for t in steps if 'Random' not in _type(t)]
    if not any(_type(t) in GAUSSIAN_TYPES for t in steps):
        # a baseline config: the data set's default cache (<data_root>/gst_cache)
        steps.insert(1, dict(type='LoadCrowdGaussians', source=source or 'fit'))
    if not any(_type(t) in KERNEL_TYPES for t in steps):
        steps.append(dict(type='LoadTransportKernel', stride=8))
    for t in steps:
        if _type(t) in GAUSSIAN_TYPES and source is not None:
            t['source'] = source
            if source != 'fit':
                t.pop('plan', None)
    return steps


def find_index(dataset, name: Optional[str], index: int) -> int:
    """Index of the sample named ``name`` (its ``img_id``), or ``index``."""
    if name is None:
        if not 0 <= index < len(dataset):
            raise IndexError(f'--index {index} outside the {len(dataset)} samples')
        return index
    for i in range(len(dataset)):
        if dataset.get_data_info(i).get('img_id') == name:
            return i
    raise KeyError(f'no sample named {name!r} in the data set')


def load_transport_sample(cfg, split: str = 'train', index: int = 0, name: Optional[str] = None,
                          source: Optional[str] = None, augment: bool = False,
                          fit: bool = False) -> Dict:
    """Run the transport part of the pipeline on one sample (fitting its Gaussians
    first with ``fit`` when their cache entry is not valid).

    Returns:
        The pipeline results: ``img`` (BGR uint8), ``points`` (N, 2) px,
        ``gaussians``, ``transport_kernel``, ``img_path`` ...
    """
    from mmengine.dataset import Compose

    from gst_mm.engine import fit_image, hook_cfg_of
    from gst_mm.utils.config import build_split_dataset

    steps = transport_pipeline(cfg, source, augment)
    # the data set with this pipeline: the resolver reads the fit plan off its transforms
    dataset = build_split_dataset(cfg, split, steps)
    idx = find_index(dataset, name, index)
    info = dataset.get_data_info(idx)
    if fit and any(getattr(t, 'fit_plan', None) for t in dataset.pipeline.transforms):
        hook = hook_cfg_of(cfg)
        gauss = next(t for t in steps if _type(t) in GAUSSIAN_TYPES)
        hook.setdefault('cache_dir', gauss.get('cache_dir'))
        fit_image(dataset, hook, info['img_path'])
    return Compose(steps)(copy.deepcopy(info))
