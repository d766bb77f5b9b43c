"""gst_mm registries: children of MMPose's, scope ``gst_mm``.

Every component registered here can be built by name from a gst_mm config
(``default_scope = 'gst_mm'``), which also sees every MMPose and MMEngine
component through the parent registries, and from a plain MMPose config as
``type='gst_mm.<Name>'`` after ``custom_imports=dict(imports=['gst_mm'])``.
Each MMPose registry has a gst_mm child, so a gst_mm-scoped build of any kind
(samplers, optimisers, loops, ...) resolves without scope fallbacks.
"""
from mmengine.registry import Registry
from mmpose import registry as mmpose_registry

SCOPE = 'gst_mm'


def _child(name: str, location: str = None) -> Registry:
    """A gst_mm child of MMPose's registry ``name``."""
    parent = getattr(mmpose_registry, name)
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=[location] if location else [])


RUNNERS = _child('RUNNERS')
RUNNER_CONSTRUCTORS = _child('RUNNER_CONSTRUCTORS')
LOOPS = _child('LOOPS')
HOOKS = _child('HOOKS', 'gst_mm.engine.hooks')
DATASETS = _child('DATASETS', 'gst_mm.datasets')
DATA_SAMPLERS = _child('DATA_SAMPLERS')
TRANSFORMS = _child('TRANSFORMS', 'gst_mm.datasets.transforms')
MODELS = _child('MODELS', 'gst_mm.models')
MODEL_WRAPPERS = _child('MODEL_WRAPPERS', 'gst_mm.models')
WEIGHT_INITIALIZERS = _child('WEIGHT_INITIALIZERS')
BATCH_AUGMENTS = _child('BATCH_AUGMENTS')
OPTIMIZERS = _child('OPTIMIZERS')
OPTIM_WRAPPERS = _child('OPTIM_WRAPPERS')
OPTIM_WRAPPER_CONSTRUCTORS = _child('OPTIM_WRAPPER_CONSTRUCTORS')
PARAM_SCHEDULERS = _child('PARAM_SCHEDULERS')
METRICS = _child('METRICS', 'gst_mm.evaluation')
EVALUATORS = _child('EVALUATORS', 'gst_mm.evaluation')
TASK_UTILS = _child('TASK_UTILS')
VISUALIZERS = _child('VISUALIZERS', 'gst_mm.visualization')
VISBACKENDS = _child('VISBACKENDS', 'gst_mm.visualization')
LOG_PROCESSORS = _child('LOG_PROCESSORS')
KEYPOINT_CODECS = _child('KEYPOINT_CODECS')
INFERENCERS = _child('INFERENCERS')

__all__ = [
    'SCOPE', 'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'DATASETS', 'DATA_SAMPLERS',
    'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'BATCH_AUGMENTS',
    'OPTIMIZERS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS',
    'METRICS', 'EVALUATORS', 'TASK_UTILS', 'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS',
    'KEYPOINT_CODECS', 'INFERENCERS'
]
