"""Pose density, keypoint scores, the collapse guard and the heatmap OT baseline,
checked against direct computations (no external data needed)."""
import math

import numpy as np
import pytest
import torch

from gst_mm.models.heads.density_maps import mass_offset, nonnegative, peak_mass
from gst_mm.models.losses import JointTransportLoss
from gst_mm.transport import grid_ot_loss, grid_sinkhorn, sinkhorn

CODEC = dict(type='MSRAHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=1)


def _grid_cost(h, w):
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    pts = torch.stack([ii.flatten(), jj.flatten()], 1).double()
    return ((pts[:, None] - pts[None]) ** 2).sum(-1)


def test_densities_hold_unit_mass_and_keep_the_peak():
    raw = torch.randn(2, 3, 16, 12, dtype=torch.float64) * 3
    d = nonnegative(raw)  # default: spatial softmax, unit mass whatever the output
    assert torch.allclose(d.flatten(2).sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert torch.equal(d.flatten(2).argmax(-1), raw.flatten(2).argmax(-1))
    # with unit mass the per-joint loss is 2 (1 - sum K d)
    kern = torch.rand(2, 3, 16, 12, dtype=torch.float64)
    from gst_mm.transport import joint_transport_losses
    assert torch.allclose(joint_transport_losses(d, kern),
                          2 * (1 - (kern * d).flatten(2).sum(-1)))
    raw = torch.zeros(2, 3, 16, 12, dtype=torch.float64)
    d = nonnegative(raw, 'softplus', init_mass=1.0)
    assert torch.allclose(d.flatten(2).sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert math.isclose(192 * math.log1p(math.exp(mass_offset(192, 0.5))), 0.5, rel_tol=1e-9)
    raw = torch.randn(2, 3, 16, 12, dtype=torch.float64)
    d = nonnegative(raw, 'softplus', init_mass=1.0)
    assert (d > 0).all()
    assert torch.equal(d.flatten(2).argmax(-1), raw.flatten(2).argmax(-1))
    # no cell ever stops passing gradient, unlike relu on all-negative output
    neg = (-5 - raw.abs()).requires_grad_(True)
    kern = torch.zeros_like(raw)
    kern[..., 5:8, 5:8] = 1.0
    for mode, alive in (('softmax', True), ('softplus', True), ('relu', False)):
        loss = JointTransportLoss()(nonnegative(neg, mode), kern, torch.ones(2, 3))
        (g, ) = torch.autograd.grad(loss['loss_transport'], neg)
        assert bool((g.abs() > 0).all()) is alive


def test_peak_mass_is_the_mass_around_the_maximum():
    d = torch.zeros(1, 3, 16, 16)
    d[0, 0, 7, 9] = 1.0  # a delta: score 1
    d[0, 1] = 1.0 / 256  # unit mass spread evenly: argmax at (0, 0), 9 cells in its window
    d[0, 2, 0, 0], d[0, 2, 1, 1], d[0, 2, 5, 5] = 0.5, 0.3, 0.2  # corner window
    s = peak_mass(d, radius=2)
    assert torch.allclose(s, torch.tensor([[1.0, 9 / 256, 0.8]]))


def test_grid_sinkhorn_matches_dense_log_sinkhorn():
    g = torch.Generator().manual_seed(0)
    h, w = 5, 4
    a = torch.rand(2, h, w, generator=g, dtype=torch.float64) + 0.05
    b = torch.rand(2, h, w, generator=g, dtype=torch.float64) ** 3 + 1e-3
    a, b = a / a.sum((1, 2), keepdim=True), b / b.sum((1, 2), keepdim=True)
    cost = _grid_cost(h, w)
    eps = 0.7
    f, gg = grid_sinkhorn(a, b, eps=eps, num_iters=300)
    value = grid_ot_loss(a, b, eps=eps, num_iters=300)
    for n in range(2):
        plan, _, _ = sinkhorn(a[n].flatten(), b[n].flatten(), cost, eps, 300, method='log')
        # plan from the grid potentials (relative to a (x) b) equals the dense plan
        p_grid = (a[n].flatten()[:, None] * b[n].flatten()[None]
                  * torch.exp((f[n].flatten()[:, None] + gg[n].flatten()[None] - cost) / eps))
        assert torch.allclose(p_grid, plan, atol=1e-9)
        assert torch.allclose(p_grid.sum(1), a[n].flatten(), atol=1e-9)
        kl = (plan * torch.log(plan / (a[n].flatten()[:, None] * b[n].flatten()[None]))).sum()
        assert value[n].item() == pytest.approx(((plan * cost).sum() + eps * kl).item(), rel=1e-7)


def test_grid_ot_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 6, 5, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(1, 6, 5, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    a.requires_grad_(True)
    (grad, ) = torch.autograd.grad(grid_ot_loss(a, b, 1.0, 400).sum(), a)
    v = torch.randn(1, 6, 5, generator=g, dtype=torch.float64)
    v = v - v.mean()  # stay on the simplex
    step = 1e-5
    with torch.no_grad():
        up = grid_ot_loss(a + step * v, b, 1.0, 400).sum()
        down = grid_ot_loss(a - step * v, b, 1.0, 400).sum()
    assert ((up - down) / (2 * step)).item() == pytest.approx((grad * v).sum().item(), rel=1e-5)


def test_heatmap_ot_loss_grows_with_the_squared_shift():
    from gst_mm.models.losses import HeatmapOTLoss
    loss = HeatmapOTLoss(eps=0.25, num_iters=200)
    yy, xx = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing='ij')

    def blob(cx, cy):
        return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))

    target = blob(15, 15)[None, None]
    vals = []
    for shift in (0, 2, 4):
        logits = torch.log(blob(15 + shift, 15) + 1e-30)[None, None]
        vals.append(loss(logits, target, torch.ones(1, 1)).item())
    # W2^2 of a translation is the squared shift (cells^2); entropy adds a constant
    assert vals[1] - vals[0] == pytest.approx(4.0, rel=0.05)
    assert vals[2] - vals[0] == pytest.approx(16.0, rel=0.05)
    # an invisible joint (weight 0) and an all-zero target do not count
    assert loss(logits, target, torch.zeros(1, 1)).item() == 0.0
    assert loss(logits, torch.zeros_like(target), torch.ones(1, 1)).item() == 0.0


def _gst_head(**kw):
    from gst_mm.registry import MODELS
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = dict(type='gst_mm.GSTHeatmapHead', in_channels=4, out_channels=3,
               deconv_out_channels=None, decoder=CODEC)
    cfg.update(kw)
    return MODELS.build(cfg)


def test_mass_scores_live_on_mmpose_scale_and_keep_the_keypoints():
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample
    head = _gst_head(nonneg='softplus')
    raw_head = _gst_head(nonneg='softplus', score='raw')
    raw_head.load_state_dict(head.state_dict())
    # a trained-like output: unit mass in a sigma = 1 cell blob at a known place
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing='ij')
    blob = torch.exp(-((xx - 6) ** 2 + (yy - 9) ** 2) / 2.0)
    density = blob / blob.sum()
    raw = torch.log(torch.expm1(density)) - mass_offset(256, 1.0)  # softplus^-1
    head.forward = raw_head.forward = lambda feats: raw.expand(1, 3, 16, 16)
    samples = [PoseDataSample(metainfo=dict(input_size=(64, 64)))]
    p_mass = head.predict((torch.zeros(1, 4, 16, 16), ), samples, {})[0]
    p_raw = raw_head.predict((torch.zeros(1, 4, 16, 16), ), samples, {})[0]
    assert isinstance(p_mass, InstanceData)
    np.testing.assert_allclose(p_mass.keypoints, p_raw.keypoints)
    np.testing.assert_allclose(p_mass.keypoints[0, 0], [6 * 4, 9 * 4], atol=0.6)
    # score='raw': the density's peak, 1 / (2 pi sigma^2) = 0.159 for a unit-mass blob
    # of sigma 1 cell (below CocoMetric's 0.2); the mass score is ~0.99
    np.testing.assert_allclose(p_raw.keypoint_scores, density.max().item(), rtol=1e-4)
    assert (p_raw.keypoint_scores < 0.2).all()
    np.testing.assert_allclose(p_mass.keypoint_scores, peak_mass(density[None, None], 2)
                               .expand(1, 3).numpy(), rtol=1e-5)
    assert (p_mass.keypoint_scores > 0.95).all()


def test_collapse_guard_warns_once_naming_the_dead_channel(capsys):
    from mmengine.logging import MMLogger
    head = _gst_head(nonneg='relu', collapse_window=3)
    head.train()
    MMLogger.get_instance('gst_collapse_test')
    mass = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.8, 0.0]])
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # channel 2 never visible
    for _ in range(5):
        head.collapse_guard(mass, weights)
    text = [line for line in capsys.readouterr().out.splitlines() if 'is dead' in line]
    assert len(text) == 1 and 'channel 0' in text[0]
    assert head._warned == {0}
    # a channel that recovers inside the window is not reported
    head2 = _gst_head(nonneg='relu', collapse_window=3)
    for m in (0.0, 0.0, 0.5, 0.0, 0.0):
        head2.collapse_guard(torch.tensor([[m, 1.0, 1.0]]), torch.ones(1, 3))
    assert head2._warned == set()


def test_mse_warmup_trains_on_mse_then_hands_over_to_gst():
    from mmengine.structures import InstanceData, PixelData
    from mmpose.structures import PoseDataSample
    head = _gst_head(mse_warmup_iters=2, mse_loss=dict(type='KeypointMSELoss',
                                                       use_target_weight=True))
    head.train()
    g = torch.Generator().manual_seed(0)
    s = PoseDataSample(metainfo=dict(img_path='a.jpg'))
    s.gt_fields = PixelData(heatmaps=torch.rand(3, 16, 16, generator=g),
                            gst_kernels=torch.rand(3, 16, 16, generator=g))
    s.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, 3))
    feats = (torch.randn(1, 4, 16, 16, generator=g), )
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    steps = []
    for it in range(3):  # what MMEngine's RuntimeInfoHook does before each iteration
        hub.update_info('iter', it)
        steps.append(head.loss(feats, [s]))
    heat = head.forward(feats)
    mse = ((heat - s.gt_fields.heatmaps[None]) ** 2).mean()
    for losses in steps[:2]:  # warm-up: MSE only, the transport term carries no weight
        assert losses['loss_transport'].item() == 0.0
        assert losses['loss_mse'].item() == pytest.approx(mse.item(), rel=1e-5)
    assert set(steps[2]) == {'loss_transport', 'acc_pose', 'joint_mass', 'mass_on_joint'}
    ref = JointTransportLoss()(nonnegative(heat), s.gt_fields.gst_kernels[None],
                               torch.ones(1, 3))['loss_transport']
    assert steps[2]['loss_transport'].item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize('score,expect_ap', [('mass', 1.0), ('raw', None)])
def test_mass_scores_rescore_coco_ap(tmp_path, score, expect_ap):
    """CocoMetric (keypoint_score_thr 0.2, score = bbox x mean of keypoint scores above
    it) on a small known case: per image one exact prediction with a confident
    (concentrated) heatmap and, listed first, one prediction 40 % of the box off with
    a diffuse heatmap. With mass scores the exact one ranks first: AP = 1. With the
    density maximum (~0.16 for a confident joint: below the threshold) every
    instance scores 0 and the tie keeps the wrong one first."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.evaluation.metrics import CocoMetric

    from gst_mm.datasets.synthetic_pose import DATASET_INFO, SyntheticPoseConfig, write_split
    ann = write_split(str(tmp_path), 'val', SyntheticPoseConfig(image_size=96), 3, seed=5)
    import json
    coco = json.load(open(ann))
    head = _gst_head(score=score)  # softmax density
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing='ij')

    def logits(sigma):
        return (-((xx - 8) ** 2 + (yy - 8) ** 2) / (2 * sigma ** 2)).expand(1, 3, 16, 16)

    scores = {}
    for name, sigma in (('sharp', 1.0), ('diffuse', 4.0)):
        head.forward = lambda feats, s=sigma: logits(s)
        pred = head.predict((torch.zeros(1, 4, 16, 16), ), [None], {})[0]
        scores[name] = float(pred.keypoint_scores.mean())
    metric = CocoMetric(ann_file=ann, score_mode='bbox_keypoint', keypoint_score_thr=0.2,
                        nms_mode='none', outfile_prefix=str(tmp_path / 'coco'))
    metric.dataset_meta = parse_pose_metainfo(DATASET_INFO)
    for a in coco['annotations']:
        kpts = np.asarray(a['keypoints'], np.float32).reshape(1, -1, 3)[..., :2]
        x, y, w, h = a['bbox']
        off = kpts + np.float32(0.4 * max(w, h))
        # CocoMetric keeps one prediction per instance id: the wrong one gets its own
        for k, s, i in ((off, scores['diffuse'], a['id'] + 1000),
                        (kpts, scores['sharp'], a['id'])):
            metric.process([], [dict(id=i, img_id=a['image_id'], category_id=1,
                                     pred_instances=dict(keypoints=k,
                                                         keypoint_scores=np.full((1, 11), s)),
                                     gt_instances=dict(bbox_scores=np.ones(1)),
                                     raw_ann_info=a)])
    ap = metric.evaluate(len(coco['annotations']) * 2)['coco/AP']
    if score == 'mass':
        assert scores['sharp'] > 0.9 and scores['diffuse'] < 0.3
        assert ap == pytest.approx(expect_ap)
    else:
        assert scores['sharp'] < 0.2  # the density peak of a confident joint
        assert ap < 0.9
