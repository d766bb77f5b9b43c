"""The data sample of the crowd-counting pipeline."""
from mmengine.structures import BaseDataElement


class CountingDataSample(BaseDataElement):
    """One image of a crowd-counting batch.

    Data fields (all optional, set by :class:`PackCountingInputs` and the model):

    - ``gt_points``: float32 ``(N, 2)`` tensor, annotation points (x, y) in input
      pixels of the (augmented) image, pixel centres at +0.5.
    - ``point_targets``: float32 ``(N,)`` tensor, target mass of each point
      (1, or the fraction of its neighbourhood inside the crop).
    - ``gt_count``: float, the ground-truth count (annotations of the original
      image at test time; the sum of ``point_targets`` at train time).
    - ``transport_kernel``: :class:`gst_mm.transport.TransportKernel` of the
      sample on the model's density grid (GST / heuristic / gt plans).
    - ``pred_density``: ``(1, h, w)`` tensor and ``pred_count``: float, set by
      the model in predict mode.

    Metainfo: ``img_path``, ``img_id``, ``ori_shape``, ``img_shape`` (h, w),
    ``gst_affine`` (3x3, original image -> input), ``flip``.
    """
