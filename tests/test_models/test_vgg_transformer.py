"""VGG19TransformerRegressor: shapes, the graph parts against references, training on CPU."""
import os.path as osp

import pytest
import torch

pytest.importorskip('mmpose')

from tiny_configs import tiny_counting_cfg  # noqa: E402

from gst_mm.models.backbones import VGG19TransformerRegressor, knn_in_degree  # noqa: E402

NARROW = (4, 8, 8, 16, 16)


def _tiny(**kw):
    kw = dict(dict(widths=NARROW, num_heads=2, ffn_dim=32, dropout=0.0), **kw)
    model = VGG19TransformerRegressor(**kw)
    model.init_weights()
    return model


def test_knn_in_degree_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 9, 3, generator=gen)
    k = 3
    degree = knn_in_degree(tokens, k)
    for b in range(2):
        d = torch.cdist(tokens[b], tokens[b])
        expected = torch.zeros(9)
        for i in range(9):
            others = [j for j in torch.argsort(d[i]).tolist() if j != i][:k]
            expected[others] += 1
        assert torch.equal(degree[b], expected)
    assert torch.equal(degree.sum(1), torch.full((2, ), 9.0 * k))


@pytest.mark.parametrize('hw', [(64, 96), (48, 56), (16, 24)])
def test_stride_8_output_is_nonnegative_on_cell_grid(hw):
    model = _tiny()
    out = model(torch.randn(2, 3, *hw))
    assert torch.isfinite(model.auxiliary_losses().get('loss_attn_var', torch.zeros(()))).all()
    assert out.shape == (2, 1, hw[0] // 8, hw[1] // 8)
    assert (out >= 0).all()


def test_images_of_a_batch_do_not_see_each_other():
    # the centrality graph and the attention are per image: a batch predicts what each
    # image alone predicts (the official code builds one graph from the first image)
    model = _tiny().eval()
    x = torch.randn(3, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[b:b + 1]) for b in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_attention_is_modulated_by_the_anchor_difference():
    model = _tiny()
    attn = model.layers[0].attn
    x = torch.randn(1, 5, 16)
    anchor = torch.rand(1, 2, 5)
    out, soft = attn(x, torch.zeros_like(x), anchor)
    # reference: softmax attention times |a(q) - a(k)|, then V, projection, residual, LN
    q, k, v = attn._heads(attn.q(x)), attn._heads(attn.k(x)), attn._heads(attn.v(x))
    ref_soft = (q @ k.transpose(-2, -1) / (8 ** 0.5)).softmax(-1)
    graph = (anchor[..., :, None] - anchor[..., None, :]).abs()
    y = ((ref_soft * graph) @ v).transpose(1, 2).reshape(1, 5, 16)
    assert torch.allclose(soft, ref_soft, atol=1e-6)
    assert torch.allclose(out, attn.norm(attn.proj(y) + x), atol=1e-5)
    # equal anchors: every token's attention output is zero (only the residual is left)
    out0, _ = attn(x, torch.zeros_like(x), torch.full((1, 2, 5), 0.5))
    assert torch.allclose(out0, attn.norm(x), atol=1e-5)


def test_auxiliary_attention_variance_only_in_training():
    model = _tiny(attn_var_weight=0.5)
    x = torch.randn(2, 3, 48, 48)
    model.train()
    model(x)
    aux = model.auxiliary_losses()['loss_attn_var']
    expected = sum(a.var(dim=-1).sum(dim=(1, 2)).mean()
                   for a in model.encode(model.features(x))[1])
    assert aux.item() == pytest.approx(0.5 * expected.item(), rel=1e-4)
    model.eval()
    model(x)
    assert model.auxiliary_losses() == {}


def test_one_line_errors_for_bad_settings():
    with pytest.raises(ValueError, match='not divisible by num_heads=3'):
        VGG19TransformerRegressor(widths=NARROW, num_heads=3)
    with pytest.raises(ValueError, match='knn_ratio must be in'):
        VGG19TransformerRegressor(widths=NARROW, num_heads=2, knn_ratio=1.5)
    with pytest.raises(ValueError, match="output_act must be one of"):
        VGG19TransformerRegressor(widths=NARROW, num_heads=2, output_act='exp')


def test_gst_training_steps_lower_the_loss_and_reach_every_part():
    from gst_mm.models.losses import GSTLoss
    from gst_mm.transport import build_kernel

    torch.manual_seed(0)
    model = _tiny()
    model.train()
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    points = [torch.rand(6, 2, generator=gen) * 64 for _ in range(2)]
    kernels = [build_kernel(p, torch.eye(2).expand(6, 2, 2) * 16.0, (8, 8), 8) for p in points]
    loss_fn = GSTLoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    values = []
    for step in range(25):
        opt.zero_grad()
        loss = loss_fn(model(images), points, kernels=kernels, stride=8)
        loss = loss + model.auxiliary_losses()['loss_attn_var']
        loss.backward()
        if step == 0:
            parts = dict(trunk=model.features, anchor=model.anchor, encoder=model.layers,
                         centrality=model.degree_embed, head=model.reg_layer)
            for name, part in parts.items():
                grad = sum(p.grad.abs().sum() for p in part.parameters() if p.grad is not None)
                assert grad > 0, f'no gradient reaches the {name}'
        opt.step()
        values.append(loss.item())
    # raw values: the first loss is several units (6 points per image, untrained density)
    assert values[0] > 2.0 and all(v == v for v in values)
    assert min(values[-5:]) < 0.5 * values[0]


def test_synthetic_config_trains_through_the_runner(tiny_crowd, tmp_path):
    from mmengine.runner import Runner

    data_root, cache_dir = tiny_crowd
    cfg = tiny_counting_cfg('gst_vgg19trans_synthetic.py', data_root, cache_dir,
                            tmp_path / 'trans', iters=3)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert type(runner.model.backbone).__name__ == 'VGG19TransformerRegressor'
    metrics = runner.test()
    assert metrics['MAE'] >= 0 and osp.isfile(osp.join(str(tmp_path / 'trans'), 'iter_3.pth'))
