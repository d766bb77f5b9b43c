"""tools/benchmark/fit_profile.py: every phase of a fit is timed once, the phases do not
add up to more than the fit's wall time, and the fit itself is unchanged by timing."""
import importlib
import os.path as osp

import numpy as np

from gst_mm.splatting import fit_gaussians
from gst_mm.splatting.synthetic import make_scene, recovery_errors

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_profile_accounts_for_the_fit(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools', 'benchmark'))
    fit_profile = importlib.import_module('fit_profile')
    r = fit_profile.profile_fit(96, 128, 12)
    phases = r['phases_s']
    assert set(phases) == set(fit_profile.PHASES) | {'other'}
    for name in ('scale selection', 'render forward', 'objective forward',
                 'render backward', 'loss backward (rest)', 'Adam', 'background re-estimate'):
        assert phases[name] > 0, name
    assert phases['other'] >= -0.01  # phases are disjoint: they never exceed the total
    assert r['pixels_rendered'] >= r['iterations'] * (96 // 2) * (128 // 2)
    # the wrappers are removed afterwards and did not change the fit
    scene = make_scene(96, 128, 12, seed=0)
    g = fit_gaussians(scene.image, scene.points, seed=0)
    err = recovery_errors(scene.scales, scene.angles, g.scales.numpy(), g.angles.numpy())
    assert np.isclose(err['std_rel_err'], r['std_rel_err'], atol=1e-4)
    fit_profile.write_markdown([r], str(tmp_path / 'p.md'), 1, '')
    text = (tmp_path / 'p.md').read_text()
    assert '| render backward |' in text and '**total**' in text
