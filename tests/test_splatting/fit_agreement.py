"""Checks that two renderers give the *same fit* without comparing optimiser
trajectories (which float rounding that differs between CPUs legitimately separates):
the fit's objective and gradients at the same parameters (one step, tight bound), and
the quality of whole fits against a synthetic scene's known truth."""
from __future__ import annotations

from typing import Callable, List

import numpy as np
import torch

from gst_mm.splatting.fit_steps import GaussianParams, Splatter, make_level, objective
from gst_mm.splatting.synthetic import SyntheticScene, recovery_errors


def objective_and_grads(params: GaussianParams, level, bg: torch.Tensor, norm: float,
                        backend: str = 'torch'):
    """The fit's objective (L1 + deformity, method.md 3) and its gradients (stds, angles,
    colour logits) at ``params``, rendered as the fit renders (:class:`Splatter`)."""
    out, _ = Splatter(backend, 'sum')(params.gaussians(level.means), level, bg)
    loss = objective(out, level.target, params.scales(), 1.5, 0.2, norm)
    grads = torch.autograd.grad(loss, [params.std, params.angle, params.color])
    return float(loss.detach()), grads


def step_states(scene: SyntheticScene, fitted) -> List[GaussianParams]:
    """Two parameter states of ``scene``: an isotropic start (angles spread, colours
    under the points) and the state of ``fitted`` (anisotropic stds)."""
    target = scene.image.astype(np.float32) / 255.0
    n = len(scene.points)
    yi, xi = scene.points[:, 1].astype(int), scene.points[:, 0].astype(int)
    start = GaussianParams(np.full(n, 3.0), torch.linspace(0.1, 3.0, n),
                           torch.as_tensor(target[yi, xi]))
    state = GaussianParams(np.ones(n), fitted.angles, fitted.colors.clamp(0.05, 0.95))
    with torch.no_grad():
        state.std.copy_(fitted.scales.log())
    return [start, state]


def assert_same_steps(scene: SyntheticScene, fitted, run_a: Callable, run_b: Callable,
                      rel: float = 2e-5) -> None:
    """At each state of :func:`step_states`, ``run_a(params, level, bg, norm)`` and
    ``run_b(...)`` (each ``-> (loss, grads)``, e.g. :func:`objective_and_grads` with
    one renderer) agree: the objective within 1e-5 relative, every gradient within
    ``rel`` of the largest one (measured: ~5e-7 for the float32 renderers)."""
    target = scene.image.astype(np.float32) / 255.0
    level = make_level(target, scene.points.astype(np.float32), 1, torch.device('cpu'))
    bg = torch.as_tensor(scene.background.astype(np.float32))
    norm = 3.0 * level.height * level.width
    for params in step_states(scene, fitted):
        loss_a, grads_a = run_a(params, level, bg, norm)
        loss_b, grads_b = run_b(params, level, bg, norm)
        assert abs(loss_a - loss_b) <= 1e-5 * abs(loss_b), (loss_a, loss_b)
        scale = max(float(g.abs().max()) for g in grads_b)
        assert scale > 0
        for ga, gb in zip(grads_a, grads_b):
            torch.testing.assert_close(ga, gb, rtol=0, atol=rel * scale)


def std_error(scene: SyntheticScene, g) -> float:
    """Median relative std error of fitted Gaussians ``g`` against the scene's truth."""
    return recovery_errors(scene.scales, scene.angles, g.scales.numpy(),
                           g.angles.numpy())['std_rel_err']
