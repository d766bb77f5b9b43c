"""Settings of the fit as one object: :class:`FitSettings` (presets, resolution
without an image, and the settings key the cache stores).

A fit option is one field of :class:`FitSettings`. Fields with ``metadata(key=False)``
(device, renderer window slack) do not change the result and stay out of the key;
``None`` fields take their preset's value (:data:`MODES`). :meth:`FitSettings.resolve`
gives every setting a fit uses (preset applied, ``auto`` backend resolved, compositing
defaulted, the soft plan's settings completed); :meth:`FitSettings.key` hashes them
with :data:`FIT_VERSION`, so an entry fitted with other settings is stale. The soft
plan's settings (:data:`SOFT_DEFAULTS`) live here too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
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
WINDOW_CAP = 2.0  # background window <= max(H, W) / WINDOW_CAP px (sparse large objects)
BACKGROUNDS = ('estimate', 'median', 'reference', 'none')
PLANS = ('hard', 'soft')
#: bumped when the fit's algorithm changes its result for the same settings
FIT_VERSION = 3
#: settings recorded per image (outcomes, not inputs): not part of the key
PER_IMAGE = ('downsample_factor', 'coarse_factor')

#: settings of the soft plan (``fit_cfg=dict(plan='soft', soft=dict(...))`` overrides)
SOFT_DEFAULTS: Dict[str, Any] = dict(
    densify=1.0,        # new components per annotation, at most
    residual=0.05,      # smoothed residual (image in [0, 1]) a new component needs
    reach=3.0,          # new components within reach * max(major std, d_nn / 2) of a click
    refine_iters=100,   # free-fit steps, at most
    early_stop=True,    # stop the free fit by the pinned fit's rule (patience, tol)
    mean_lr=0.25,       # Adam step of the means, px
    click_std=2.0,      # std px of a click's anchor Gaussian (None: the pinned fit's)
    temperature=0.3,    # tau of the reduction's entropic OT (docs/soft_kernel.md sweep)
    cutoff=3.0,         # d of the background pen (method.md 4)
    candidates=8,       # annotations costed per component
    min_resp=1e-3,      # smaller responsibilities go to the background
)


def resolve_soft(soft: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """:data:`SOFT_DEFAULTS` with ``soft``'s overrides (``TypeError`` naming unknown
    keys, ``ValueError`` for out-of-range values)."""
    cfg = dict(SOFT_DEFAULTS)
    extra = sorted(set(soft or {}) - set(cfg))
    if extra:
        raise TypeError(f'unknown soft-plan setting(s) {extra}; expected {sorted(cfg)}')
    cfg.update(soft or {})
    for key in ('densify', 'residual', 'mean_lr', 'min_resp'):
        if not float(cfg[key]) >= 0:
            raise ValueError(f'soft plan: {key} must be >= 0, got {cfg[key]!r}')
    if cfg['click_std'] is not None and not float(cfg['click_std']) > 0:
        raise ValueError(f"soft plan: click_std must be > 0 or None, got {cfg['click_std']!r}")
    for key in ('reach', 'temperature', 'cutoff'):
        if not float(cfg[key]) > 0:
            raise ValueError(f'soft plan: {key} must be > 0, got {cfg[key]!r}')
    if int(cfg['refine_iters']) < 0 or int(cfg['candidates']) < 1:
        raise ValueError('soft plan: refine_iters must be >= 0 and candidates >= 1')
    return cfg


def _not_key(default: Any) -> Any:
    return field(default=default, metadata=dict(key=False))


@dataclass(frozen=True)
class FitSettings:
    """Every option of a fit (:func:`.fit.fit_gaussians`).

    ``None`` = the preset's value (``mode``: ``'default'`` or ``'reference'``). Build
    from a config's ``fit_cfg`` with :meth:`from_cfg` (``TypeError`` naming unknown
    keys). The fields:

    * ``iterations``: maximum Adam steps (preset: 300 default / 4000 reference).
    * ``lr``: Adam learning rate (colour, angle; stds too unless ``scale_lr``).
    * ``delta``, ``beta``: deformity elimination threshold and weight.
    * ``backend``: renderer, ``'auto'`` | ``'torch'`` | ``'gsplat'`` |
      ``'dense'`` (the exact ``O(N H W)`` reference, for agreement tests);
      ``'auto'`` is gsplat when it works and compositing is alpha, else the
      torch renderer (:func:`.render.resolve_backend`; logged once).
    * ``mode``: preset, ``'default'`` or ``'reference'`` (:data:`MODES`; the
      :mod:`.fit` docstring describes both).
    * ``init``: ``'scale'`` (default preset: read from the image,
      :mod:`.scale`), ``'knn'`` (``knn_fraction * d_knn``) or ``'reference'``.
    * ``background``: ``'estimate'`` | ``'median'`` | ``'reference'`` |
      ``'none'``, or a fixed ``(H, W, 3)`` float [0, 1] layer (ablations).
    * ``scale_param``: ``'log'`` or ``'linear'`` stds.
    * ``early_stop``: stop once the mean loss of the last ``patience`` steps
      is less than ``tol`` (relative) below the mean of the ``patience``
      steps before.
    * ``compositing``: ``'sum'`` (default on every renderer, so a GPU box and
      a CPU box fit the same Gaussians) or ``'alpha'`` (the only one gsplat
      draws; default when ``backend='gsplat'`` is asked for explicitly).
    * ``scale_lr``: learning rate of the std parameters (default ``5 * lr``
      for log stds, i.e. 5 % per step, ``lr`` for linear).
    * ``bg_updates``, ``bg_interval``: re-estimate the background
      ``bg_updates`` times, every ``bg_interval`` steps (``'estimate'``
      only); the early stop applies after the last re-estimate.
    * ``window_margin``: slack of the torch renderer's reused pixel windows.
    * ``downsample``: fit on the image shrunk by this factor (area averaging)
      and map the Gaussians back; ``'auto'`` (default preset) picks
      ``floor(q10(initial std) / min_std_px)`` clamped to [1, 8], so only
      images whose objects are all large are shrunk; 1 = full resolution.
    * ``coarse``: run the background re-estimation phase on the image shrunk
      by this factor and converge at full resolution afterwards (default
      preset 2, reference 1; only with ``'estimate'`` and log stds; skipped
      when the shrunk image would be under 48 px).
    * ``max_growth``: every std stays within ``[init / max_growth, init *
      max_growth]`` (default preset 3; reference unbounded; ``math.inf`` =
      unbounded; docs/fit_scale.md).
    * ``knn_fraction``: the ``'knn'`` init's fraction of ``d_knn``.
    * ``init_mask``: the ``'scale'`` init reads the stds twice, the second
      time from the image minus the background seen outside discs of radius
      ``min(2.5 s_1, init_mask * d_1)`` (``s_1`` the first reading, ``d_1``
      the distance to the nearest other point); ``0`` = one reading from the
      raw image (the init before fit version 3; docs/fit_scale.md).
    * ``tol``, ``patience``: the early-stop rule (:func:`.fit_steps.converged`).
    * ``min_std_px``: ``downsample='auto'`` keeps the smallest objects' (q10)
      initial std at least this many px.
    * ``seed``: seeds the random initial angles (deterministic for a seed).
    * ``drop_outside``: drop points outside the image with a warning
      instead of raising.
    * ``plan``: ``'hard'`` (the paper: one pinned Gaussian per point) or
      ``'soft'`` (the pinned fit, then free Gaussians reduced onto the
      points, :mod:`.free_fit`, docs/soft_kernel.md); ``soft``: its settings
      (:data:`.fit_config.SOFT_DEFAULTS`).
    * ``device``: torch device (default: CUDA when present, else CPU).
    """
    iterations: Optional[int] = None
    lr: float = 0.01
    delta: float = 1.5
    beta: float = 0.2
    backend: str = 'auto'
    mode: str = 'default'
    init: Optional[str] = None
    background: Any = None
    scale_param: Optional[str] = None
    early_stop: Optional[bool] = None
    compositing: Optional[str] = None
    knn_fraction: float = 0.3
    init_mask: float = 0.5
    scale_lr: Optional[float] = None
    bg_updates: int = 6
    bg_interval: int = 25
    tol: float = 5e-3
    patience: int = 10
    downsample: Any = None
    coarse: Optional[int] = None
    min_std_px: float = 4.0
    max_growth: Optional[float] = None
    seed: int = 0
    drop_outside: bool = False
    plan: str = 'hard'
    soft: Optional[Dict[str, Any]] = None
    window_margin: float = _not_key(1.15)
    device: Optional[str] = _not_key(None)

    @classmethod
    def from_cfg(cls, fit_cfg: Optional[Dict[str, Any]] = None, **more: Any) -> 'FitSettings':
        """Settings from a ``fit_cfg`` dict (and keywords); ``TypeError`` naming
        unknown keys (a typo in a config's ``fit_cfg``)."""
        given = dict(fit_cfg or {}, **more)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise TypeError(f'unknown fit setting(s) {unknown}; fit_gaussians takes {names}')
        return cls(**given)

    def __post_init__(self) -> None:
        if self.plan not in PLANS:
            raise ValueError(f'unknown plan {self.plan!r}; expected one of {PLANS}')
        if self.soft is not None and self.plan != 'soft':
            raise ValueError("soft= settings need plan='soft'")
        if not float(self.init_mask) >= 0:
            raise ValueError(f'init_mask must be >= 0 (0: one raw reading), got {self.init_mask!r}')

    def preset(self) -> Dict[str, Any]:
        """The preset's values with this object's explicit ones (may hold a given
        background image as ``background_image``, with ``background='given'``)."""
        if self.mode not in MODES:
            raise ValueError(f'unknown fit mode {self.mode!r}; expected one of {tuple(MODES)}')
        cfg = dict(MODES[self.mode])
        cfg.update({k: getattr(self, k) for k in cfg if getattr(self, k) is not None})
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

    def resolve(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """``(cfg, settings)``: :meth:`preset`, and every setting of a fit that does not
        depend on the image (json-serialisable; the fields that are part of the key,
        resolved: the preset applied, compositing defaulted to ``'sum'`` whatever the
        renderer so the default fit is the same fit on every machine, ``'auto'``
        resolved by :func:`.render.resolve_backend`, ``scale_lr`` defaulted, the soft
        plan's settings completed; ``plan`` is recorded only for the soft plan, so the
        hard plan's key predates it)."""
        cfg = self.preset()
        compositing = self.compositing
        if compositing is None:
            compositing = 'alpha' if self.backend == 'gsplat' else 'sum'
        backend = resolve_backend(self.backend, compositing)
        if backend == 'gsplat' and compositing != 'alpha':
            raise ValueError('the gsplat backend only does alpha compositing')
        scale_lr = self.scale_lr
        if scale_lr is None:
            scale_lr = 5 * self.lr if cfg['scale_param'] == 'log' else self.lr
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.metadata.get('key', True)}
        settings.update({k: v for k, v in cfg.items() if k != 'background_image'},
                        backend=backend, compositing=compositing, scale_lr=scale_lr)
        del settings['plan'], settings['soft']
        if self.plan == 'soft':
            settings.update(plan='soft', soft=resolve_soft(self.soft))
        return cfg, settings

    def key(self) -> str:
        """:func:`fit_settings_key` of :meth:`resolve`'s settings."""
        return fit_settings_key(self.resolve()[1])


def fit_settings_key(settings: Dict[str, Any]) -> str:
    """16-hex-digit key of the settings that change a fit's result: every resolved
    setting (mode, compositing, iterations, background, init, backend family, rates,
    seed...) plus :data:`FIT_VERSION`; not the device nor per-image outcomes.
    ``settings`` is :meth:`FitSettings.resolve`'s or a :class:`.fit.FitInfo`'s."""
    core = {k: v for k, v in settings.items() if k not in PER_IMAGE}
    core['fit_version'] = FIT_VERSION
    text = json.dumps(core, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def fit_settings(**fit_cfg: Any) -> Dict[str, Any]:
    """The resolved settings a fit with ``fit_cfg`` would use, without fitting
    (``TypeError`` naming unknown keys)."""
    return FitSettings.from_cfg(fit_cfg).resolve()[1]


def fit_cfg_key(fit_cfg: Optional[Dict[str, Any]] = None) -> str:
    """The cache's settings key of a fit with ``fit_cfg`` (keywords of
    :func:`.fit.fit_gaussians`; ``TypeError`` naming unknown keys), without fitting."""
    return FitSettings.from_cfg(fit_cfg).key()


def default_device() -> str:
    """Device of a fit: CUDA when present (torch or gsplat renderer), else CPU."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'
