"""gst_mm registries: children of MMPose's, scope ``gst_mm``.

Every component registered here can be built by name from a gst_mm config
(``default_scope = 'gst_mm'``), which also sees every MMPose and MMEngine
component through the parent registries, and from a plain MMPose config as
``type='gst_mm.<Name>'`` after ``custom_imports=dict(imports=['gst_mm'])``.
"""
from mmengine.registry import Registry
from mmpose.registry import DATASETS as MMPOSE_DATASETS
from mmpose.registry import EVALUATORS as MMPOSE_EVALUATORS
from mmpose.registry import HOOKS as MMPOSE_HOOKS
from mmpose.registry import METRICS as MMPOSE_METRICS
from mmpose.registry import MODEL_WRAPPERS as MMPOSE_MODEL_WRAPPERS
from mmpose.registry import MODELS as MMPOSE_MODELS
from mmpose.registry import TRANSFORMS as MMPOSE_TRANSFORMS
from mmpose.registry import VISBACKENDS as MMPOSE_VISBACKENDS
from mmpose.registry import VISUALIZERS as MMPOSE_VISUALIZERS

SCOPE = 'gst_mm'

DATASETS = Registry(
    'dataset', parent=MMPOSE_DATASETS, scope=SCOPE, locations=['gst_mm.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMPOSE_TRANSFORMS, scope=SCOPE, locations=['gst_mm.datasets.transforms'])
MODELS = Registry(
    'model', parent=MMPOSE_MODELS, scope=SCOPE, locations=['gst_mm.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMPOSE_MODEL_WRAPPERS, scope=SCOPE, locations=['gst_mm.models'])
METRICS = Registry(
    'metric', parent=MMPOSE_METRICS, scope=SCOPE, locations=['gst_mm.evaluation'])
EVALUATORS = Registry(
    'evaluator', parent=MMPOSE_EVALUATORS, scope=SCOPE, locations=['gst_mm.evaluation'])
HOOKS = Registry(
    'hook', parent=MMPOSE_HOOKS, scope=SCOPE, locations=['gst_mm.engine.hooks'])
VISUALIZERS = Registry(
    'visualizer', parent=MMPOSE_VISUALIZERS, scope=SCOPE, locations=['gst_mm.visualization'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMPOSE_VISBACKENDS, scope=SCOPE, locations=['gst_mm.visualization'])

__all__ = [
    'SCOPE', 'DATASETS', 'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS', 'METRICS',
    'EVALUATORS', 'HOOKS', 'VISUALIZERS', 'VISBACKENDS'
]
