"""Registry set-up for scripts and notebooks."""
import datetime

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every gst_mm (and MMPose) module so all components are registered.

    Args:
        init_default_scope: also make ``gst_mm`` the current default scope, so
            registries resolve names in gst_mm first, then MMPose, then MMEngine.
    """
    from mmpose.utils import register_all_modules as register_mmpose_modules

    register_mmpose_modules(init_default_scope=False)
    import gst_mm.datasets  # noqa: F401
    import gst_mm.engine  # noqa: F401
    import gst_mm.evaluation  # noqa: F401
    import gst_mm.models  # noqa: F401
    import gst_mm.visualization  # noqa: F401

    if init_default_scope:
        current = DefaultScope.get_current_instance()
        if current is None or current.scope_name != 'gst_mm':
            stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
            DefaultScope.get_instance(f'gst_mm-{stamp}', scope_name='gst_mm')
