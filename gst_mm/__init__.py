"""gst_mm: Gaussian Spatial Transport for MMEngine and MMPose.

``import gst_mm`` registers every gst_mm component in the gst_mm registries
(children of MMPose's), so both ``default_scope='gst_mm'`` configs and plain
MMPose configs with ``custom_imports=dict(imports=['gst_mm'])`` and
``type='gst_mm.<Name>'`` can build them.

The pure cores (:mod:`gst_mm.splatting`, :mod:`gst_mm.transport`) import no
OpenMMLab package; when MMPose is not installed only they are available.
"""
import importlib.util
import warnings

from .version import __version__

# mmengine 0.10.7 imports pkg_resources, whose deprecation warning (setuptools >= 77 is
# pinned below 81, where it still exists) printed several lines before every tool's
# output; it says nothing to a user of gst_mm
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

__all__ = ['__version__']

if importlib.util.find_spec('mmpose') is not None:  # OpenMMLab adapters
    from . import datasets, engine, evaluation, models, structures, visualization  # noqa: F401
    from .utils import register_all_modules, setup_checkpoint_loading, setup_visualizer_compat

    setup_checkpoint_loading()
    setup_visualizer_compat()
    __all__ += ['register_all_modules']
