"""gst_mm registries: own scope, MMPose parents, and use from plain MMPose configs."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip('mmpose')


def test_children_of_mmpose_registries():
    from mmpose.registry import HOOKS as MMPOSE_HOOKS
    from mmpose.registry import MODELS as MMPOSE_MODELS

    from gst_mm.registry import HOOKS, MODELS

    assert MODELS.scope == 'gst_mm' and MODELS.parent is MMPOSE_MODELS
    assert HOOKS.parent is MMPOSE_HOOKS
    assert MMPOSE_MODELS.children['gst_mm'] is MODELS


def test_gst_scope_builds_own_and_parent_components(tmp_path):
    from mmengine.registry import HOOKS as ROOT_HOOKS
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import DefaultScope

    import gst_mm
    from gst_mm.engine import GSTPrecomputeHook
    from gst_mm.registry import MODELS

    gst_mm.register_all_modules(init_default_scope=False)
    # own component through the gst_mm registry
    hook = ROOT_HOOKS.build(
        dict(type='gst_mm.GSTPrecomputeHook', cache_dir=str(tmp_path)))
    assert isinstance(hook, GSTPrecomputeHook)
    # an MMPose component through gst_mm's registry (parent lookup)
    loss = MODELS.build(dict(type='KeypointMSELoss', use_target_weight=True))
    assert type(loss).__name__ == 'KeypointMSELoss'
    # an MMEngine root component reached from the gst_mm scope
    with DefaultScope.overwrite_default_scope('gst_mm'):
        gst_loss = ROOT_MODELS.build(dict(type='GSTLoss'))
        assert type(gst_loss).__module__.startswith('gst_mm.')
        hook2 = ROOT_HOOKS.build(dict(type='GSTPrecomputeHook', cache_dir=str(tmp_path)))
        assert isinstance(hook2, GSTPrecomputeHook)


def test_register_all_modules_sets_scope():
    from mmengine.registry import DefaultScope

    from gst_mm.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'gst_mm'


def test_plain_mmpose_config_with_custom_imports(tmp_path, repo_root):
    """A plain MMPose config reaches gst_mm components as 'gst_mm.<Name>' in a
    fresh interpreter where nothing imported gst_mm before the config did."""
    cfg_file = tmp_path / 'plain_mmpose_cfg.py'
    cfg_file.write_text(textwrap.dedent(f"""
        default_scope = 'mmpose'
        custom_imports = dict(imports=['gst_mm'], allow_failed_imports=False)
        loss = dict(type='gst_mm.GSTLoss', loss_weight=2.0)
        hook = dict(type='gst_mm.GSTPrecomputeHook', cache_dir={str(tmp_path)!r})
        mse = dict(type='KeypointMSELoss')
    """))
    script = textwrap.dedent(f"""
        import sys
        assert 'gst_mm' not in sys.modules
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmpose.utils import register_all_modules
        register_all_modules()
        cfg = Config.fromfile({str(cfg_file)!r})
        assert 'gst_mm' in sys.modules
        init_default_scope(cfg.default_scope)
        from mmpose.registry import MODELS, HOOKS
        loss = MODELS.build(cfg.loss)
        assert type(loss).__name__ == 'GSTLoss' and loss.loss_weight == 2.0
        hook = HOOKS.build(cfg.hook)
        assert type(hook).__name__ == 'GSTPrecomputeHook'
        assert type(MODELS.build(cfg.mse)).__name__ == 'KeypointMSELoss'
        print('OK')
    """)
    out = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300,
                         env=_env_with_repo(repo_root))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('OK')


def _env_with_repo(repo_root):
    import os

    env = dict(os.environ)
    extra = osp.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else ''
    env['PYTHONPATH'] = repo_root + extra
    return env
