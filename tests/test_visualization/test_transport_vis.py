"""Transport-map drawing: sparse path equals the dense definition; background is blank."""
import numpy as np
import pytest
import torch

pytest.importorskip('mmpose')

from gst_mm.transport import build_kernel  # noqa: E402
from gst_mm.visualization import (  # noqa: E402
    annotation_colors,
    colorize_density,
    compose_panels,
    draw_points,
    transport_map,
)


def _kernel():
    means = torch.tensor([[20.0, 20.0], [44.0, 28.0], [60.0, 70.0]])
    covs = torch.tensor([[[36.0, 10.0], [10.0, 25.0]], [[64.0, 0.0], [0.0, 16.0]],
                         [[30.0, -5.0], [-5.0, 30.0]]])
    return build_kernel(means, covs, (12, 12), 8)


def test_transport_map_sparse_equals_dense_colour_mix():
    kernel = _kernel()
    colors = annotation_colors(3)
    dense = kernel.dense().double()[:, :3] @ torch.as_tensor(colors, dtype=torch.float64)
    expected = np.clip(dense.numpy().reshape(12, 12, 3), 0, 255).round().astype(np.uint8)
    np.testing.assert_array_equal(transport_map(kernel, colors), expected)
    np.testing.assert_array_equal(transport_map((kernel.dense().numpy(), (12, 12)), colors),
                                  expected)


def test_background_cells_are_blank_and_point_cells_take_their_colour():
    kernel = _kernel()
    colors = annotation_colors(3)
    image = transport_map(kernel, colors)
    assert image[11, 0].max() == 0  # far from every annotation: background -> black
    r, c = int(20 // 8), int(20 // 8)  # the cell holding the first annotation
    cell = image[r, c].astype(float)
    dists = np.linalg.norm(colors.astype(float) - cell, axis=1)
    assert dists.argmin() == 0


def test_annotation_colours_are_distinct_and_saturated():
    colors = annotation_colors(50).astype(int)
    assert len({tuple(c) for c in colors}) == 50
    assert (colors.max(1) == 255).all()


def test_density_colours_points_and_panels_shapes():
    heat = colorize_density(torch.rand(1, 6, 9))
    assert heat.shape == (6, 9, 3) and heat.dtype == np.uint8
    img = np.zeros((40, 60, 3), np.uint8)
    dotted = draw_points(img, np.array([[10.5, 20.5]]), (255, 0, 0), radius=2)
    assert tuple(dotted[20, 10]) == (255, 0, 0) and img.max() == 0
    fig = compose_panels([('a', img), ('b', heat)], height=80)
    assert fig.shape[0] == 80 + 28 and fig.dtype == np.uint8


@pytest.mark.parametrize('name,source', [('gst_vgg19_synthetic.py', None),
                                         ('gst_vgg19_synthetic.py', 'heuristic'),
                                         ('l2_vgg19_synthetic.py', 'gt')])
def test_visualize_tool_pipeline_keeps_loading_and_kernel_steps(name, source):
    import os.path as osp

    from mmengine.config import Config
    from tiny_configs import CONFIG_DIR

    from gst_mm.visualization.transport_sample import transport_pipeline

    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    steps = transport_pipeline(cfg, source, augment=False)
    types = [t['type'] for t in steps]
    assert types[0] == 'LoadImageFromFile'
    assert types[-1] == 'LoadTransportKernel'
    assert not any('Random' in t or t.startswith('Pack') for t in types)
    gauss = [t for t in steps if t['type'] == 'LoadCrowdGaussians']
    assert len(gauss) == 1 and gauss[0].get('source', 'fit') == (source or 'fit')
    aug = [t['type'] for t in transport_pipeline(cfg, source, augment=True)]
    assert 'CrowdRandomCrop' in aug
