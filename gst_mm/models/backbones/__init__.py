"""Density-regression backbones."""
from .vgg_regressor import VGG19Regressor, make_vgg_features
from .vgg_transformer import VGG19TransformerRegressor, knn_in_degree

__all__ = ['VGG19Regressor', 'VGG19TransformerRegressor', 'knn_in_degree', 'make_vgg_features']
