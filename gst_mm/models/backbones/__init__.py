"""Density-regression backbones."""
from .vgg_regressor import VGG19Regressor, make_vgg_features

__all__ = ['VGG19Regressor', 'make_vgg_features']
