"""Registered data-pipeline transforms."""
from .crowd_transforms import (
                               CrowdRandomCrop,
                               CrowdRandomFlip,
                               CrowdRandomResize,
                               CrowdResize,
                               LoadCrowdGaussians,
                               PackCountingInputs,
                               RandomGrayscale,
)
from .kernel_transforms import LoadTransportKernel, build_sample_kernel
from .pose_transforms import LoadPoseTransportKernel

__all__ = [
    'LoadCrowdGaussians', 'CrowdRandomResize', 'CrowdRandomCrop', 'CrowdRandomFlip',
    'CrowdResize', 'RandomGrayscale', 'PackCountingInputs', 'LoadTransportKernel',
    'build_sample_kernel', 'LoadPoseTransportKernel'
]
