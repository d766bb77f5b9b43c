"""Settings of the fit: presets, resolution without an image, and the settings key.

:func:`resolve_settings` turns a preset (``mode``) and explicit keywords into every
setting a fit uses (``auto`` backend resolved, compositing defaulted); the cache stores
:func:`fit_settings_key` of them, so an entry fitted with other settings is stale.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .render import resolve_backend

MODES: Dict[str, Dict[str, Any]] = {
    'default': dict(iterations=300, init='scale', background='estimate', scale_param='log',
                    early_stop=True, downsample='auto', coarse=2, max_growth=3.0),
    'reference': dict(iterations=4000, init='reference', background='reference',
                      scale_param='linear', early_stop=False, downsample=1, coarse=1,
                      max_growth=None),
}
#: initial stds: from the image (scale space), from the spacing (kNN), the authors'
INITS = ('scale', 'knn', 'reference')
#: preset keys (``None`` in an explicit keyword = keep the preset's value)
PRESET_KEYS = ('iterations', 'init', 'background', 'scale_param', 'early_stop', 'downsample',
               'coarse', 'max_growth')
WINDOW_CAP = 2.0  # background window <= max(H, W) / WINDOW_CAP px (sparse large objects)
BACKGROUNDS = ('estimate', 'median', 'reference', 'none')


def _resolve(mode: str, **overrides) -> Dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f'unknown fit mode {mode!r}; expected one of {tuple(MODES)}')
    cfg = dict(MODES[mode])
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(cfg['background'], np.ndarray):
        cfg['background_image'], cfg['background'] = cfg['background'], 'given'
    elif cfg['background'] not in BACKGROUNDS:
        raise ValueError(f"unknown background {cfg['background']!r}; expected {BACKGROUNDS}")
    if cfg['init'] not in INITS:
        raise ValueError(f"unknown init {cfg['init']!r}; expected one of {INITS}")
    if cfg['max_growth'] is not None and not float(cfg['max_growth']) > 1:
        raise ValueError(f"max_growth must be > 1 or None, got {cfg['max_growth']!r}")
    if cfg['scale_param'] not in ('log', 'linear'):
        raise ValueError(f"unknown scale_param {cfg['scale_param']!r}")
    return cfg


def resolve_settings(mode: str, *, lr: float, delta: float, beta: float, backend: str,
                     compositing: Optional[str], knn_fraction: float,
                     scale_lr: Optional[float], **rest) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(cfg, settings)``: the preset with its overrides (``cfg``, may hold a given
    background image) and every setting of a fit that does not depend on the image
    (json-serialisable ``settings``; see :func:`fit_settings_key`).

    Compositing defaults to ``'sum'`` whatever the renderer (so the default fit is
    the same fit on every machine); ``backend='auto'`` then resolves by
    :func:`.render.resolve_backend` (gsplat only draws alpha compositing)."""
    preset = {k: rest.pop(k) for k in PRESET_KEYS}
    cfg = _resolve(mode, **preset)
    if compositing is None:
        compositing = 'alpha' if backend == 'gsplat' else 'sum'
    backend = resolve_backend(backend, compositing)
    if backend == 'gsplat' and compositing != 'alpha':
        raise ValueError('the gsplat backend only does alpha compositing')
    if scale_lr is None:
        scale_lr = 5 * lr if cfg['scale_param'] == 'log' else lr
    settings = dict({k: v for k, v in cfg.items() if k != 'background_image'}, lr=lr,
                    delta=delta, beta=beta, backend=backend, compositing=compositing,
                    knn_fraction=knn_fraction, scale_lr=scale_lr, mode=mode, **rest)
    return cfg, settings


#: bumped when the fit's algorithm changes its result for the same settings
FIT_VERSION = 2
#: settings recorded per image (outcomes, not inputs): not part of the key
PER_IMAGE = ('downsample_factor', 'coarse_factor')
#: arguments of :func:`fit_gaussians` that are not fit settings
NOT_SETTINGS = ('image', 'points', 'device', 'name', 'return_info', 'window_margin')


def fit_settings_key(settings: Dict[str, Any]) -> str:
    """16-hex-digit key of the settings that change a fit's result: every resolved
    setting (mode, compositing, iterations, background, init, backend family, rates,
    seed...) plus :data:`FIT_VERSION`; not the device nor per-image outcomes.
    ``settings`` is :func:`fit_settings`'s result or a :class:`FitInfo`'s."""
    import hashlib
    import json
    core = {k: v for k, v in settings.items() if k not in PER_IMAGE}
    core['fit_version'] = FIT_VERSION
    text = json.dumps(core, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def default_device() -> str:
    """Device of a fit: CUDA when present (torch or gsplat renderer), else CPU."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'
