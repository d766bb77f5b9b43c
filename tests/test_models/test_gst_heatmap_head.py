"""GSTHeatmapHead: loss and gradient vs a direct computation; PCKh sanity check."""
import copy

import numpy as np
import pytest
import torch

CODEC = dict(type='MSRAHeatmap', input_size=(256, 256), heatmap_size=(64, 64), sigma=2)


def _head(**kwargs):
    from gst_mm.registry import MODELS
    cfg = dict(type='gst_mm.GSTHeatmapHead', in_channels=8, out_channels=4,
               deconv_out_channels=None, decoder=CODEC,
               mse_loss=dict(type='KeypointMSELoss', use_target_weight=True))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _samples(batch, k=4, size=64, seed=0, drop=((0, 1),)):
    from mmengine.structures import InstanceData, PixelData
    from mmpose.structures import PoseDataSample
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batch):
        kern = torch.rand(k, size, size, generator=g) ** 4
        weights = torch.ones(1, k)
        for bb, jj in drop:
            if bb == b:
                kern[jj] = 0  # e.g. outside the crop
        weights[0, k - 1] = 0 if b == 1 else 1  # invisible joint
        s = PoseDataSample(metainfo=dict(img_path=f'img{b}.jpg'))
        s.gt_fields = PixelData(heatmaps=torch.rand(k, size, size, generator=g),
                                gst_kernels=kern)
        s.gt_instance_labels = InstanceData(keypoint_weights=weights)
        out.append(s)
    return out


def _direct_loss(heat, samples, nonneg):
    """Independent loop: mean over all joint slots of w * per-joint two-column loss."""
    total, count = 0.0, 0
    for b, s in enumerate(samples):
        for j in range(heat.shape[1]):
            count += 1
            k = s.gt_fields.gst_kernels[j].double()
            w = float(s.gt_instance_labels.keypoint_weights[0, j]) * float(k.sum() > 0)
            d = heat[b, j].double()
            if nonneg == 'softmax':  # a distribution over the cells
                d = torch.exp(d) / torch.exp(d).sum()
            elif nonneg == 'softplus':  # unit mass at raw 0: softplus(h + log(expm1(1 / cells)))
                d = torch.log1p(torch.exp(d + np.log(np.expm1(1.0 / d.numel()))))
            else:
                d = d.clamp_min(0) if nonneg == 'relu' else d.abs()
            total = total + w * ((k * d).sum() - 1).abs() + w * ((1 - k) * d).sum().abs()
    return total / count


@pytest.mark.parametrize('nonneg,mse_weight', [('softmax', 0.0), ('softplus', 0.0),
                                               ('relu', 0.0), ('abs', 0.0), ('softmax', 0.5)])
def test_loss_and_gradient_match_direct_computation(registered, nonneg, mse_weight):
    torch.manual_seed(0)
    head = _head(nonneg=nonneg, mse_weight=mse_weight).double()
    # large final-layer weights so heatmaps have both signs and O(1) mass
    torch.nn.init.normal_(head.final_layer.weight, std=0.05)
    feats = (torch.randn(2, 8, 64, 64, dtype=torch.float64, requires_grad=True), )
    samples = _samples(2)
    losses = head.loss(feats, samples)
    # each loss term is logged on its own; MMEngine sums the loss_* keys
    assert set(losses) == {'loss_transport', 'acc_pose', 'joint_mass', 'mass_on_joint'} | (
        {'loss_mse'} if mse_weight else set())
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    (g_head, ) = torch.autograd.grad(total, feats[0])

    feats2 = feats[0].detach().clone().requires_grad_(True)
    heat = head.forward((feats2, ))
    ref = _direct_loss(heat, samples, nonneg)
    assert torch.allclose(losses['loss_transport'], ref, rtol=1e-10)
    if mse_weight:
        gt = torch.stack([s.gt_fields.heatmaps for s in samples]).double()
        w = torch.cat([s.gt_instance_labels.keypoint_weights for s in samples]).double()
        mse = (((heat - gt) ** 2) * w[..., None, None]).mean()  # KeypointMSELoss
        assert torch.allclose(losses['loss_mse'], mse_weight * mse, rtol=1e-10)
        ref = ref + mse_weight * mse
    (g_ref, ) = torch.autograd.grad(ref, feats2)
    assert torch.allclose(total, ref, rtol=1e-10)
    assert torch.allclose(g_head, g_ref, rtol=1e-8, atol=1e-14)


def test_loss_finite_difference(registered):
    """Directional derivative of loss_transport w.r.t. the final conv weight."""
    torch.manual_seed(1)
    head = _head(nonneg='abs').double()
    torch.nn.init.normal_(head.final_layer.weight, std=0.05)
    feats = (torch.randn(2, 8, 64, 64, dtype=torch.float64), )
    samples = _samples(2, seed=3)
    wgt = head.final_layer.weight
    loss = head.loss(feats, samples)['loss_transport']
    (grad, ) = torch.autograd.grad(loss, wgt)
    direction = torch.randn_like(wgt)
    eps = 1e-6
    with torch.no_grad():
        wgt += eps * direction
        up = head.loss(feats, samples)['loss_transport']
        wgt -= 2 * eps * direction
        down = head.loss(feats, samples)['loss_transport']
        wgt += eps * direction
    fd = (up - down) / (2 * eps)
    assert torch.allclose(fd, (grad * direction).sum(), rtol=1e-5)


def test_missing_kernels_name_the_fix(registered):
    head = _head()
    samples = _samples(1)
    del samples[0].gt_fields.gst_kernels
    with pytest.raises(KeyError, match='after GenerateTarget'):
        head.loss((torch.randn(1, 8, 64, 64), ), samples)


def test_decode_of_ground_truth_heatmaps_gives_pckh_100(mpii):
    """Known answer: MMPose's own Gaussian targets of the ground truth, decoded by the
    GST head (plain and with flip test) and scored by MpiiPCKAccuracy -> 100."""
    from mmengine.dataset import pseudo_collate
    from mmpose.codecs import MSRAHeatmap
    from mmpose.datasets import MpiiDataset
    from mmpose.evaluation import MpiiPCKAccuracy
    from mmpose.models.utils.tta import flip_heatmaps

    from gst_mm.registry import MODELS

    codec = MSRAHeatmap(input_size=(256, 256), heatmap_size=(64, 64), sigma=2)
    pipeline = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
                dict(type='TopdownAffine', input_size=(256, 256)),
                dict(type='PackPoseInputs', pack_transformed=True)]
    ds = MpiiDataset(data_root=mpii['data_root'], ann_file=mpii['ann_file'],
                     data_prefix=dict(img=mpii['img_prefix']), headbox_file=mpii['headbox_file'],
                     test_mode=True, pipeline=pipeline)
    model = MODELS.build(dict(
        type='TopdownPoseEstimator',
        backbone=dict(type='ResNet', depth=18, out_indices=(3, )),  # unused
        head=dict(type='gst_mm.GSTHeatmapHead', in_channels=512, out_channels=16,
                  deconv_out_channels=None, decoder=CODEC),
        test_cfg=dict(flip_test=False)))
    batch = pseudo_collate([ds[i] for i in range(len(ds))])
    samples = batch['data_samples']
    flip_indices = samples[0].metainfo['flip_indices']

    def target(kpts, vis):
        return torch.as_tensor(codec.encode(kpts[None], vis[None])['heatmaps'])

    heat, heat_flipped = [], []
    for s in samples:
        tk = np.asarray(s.gt_instances.transformed_keypoints)[0].astype(np.float32)
        vis = np.ones(16, np.float32)
        heat.append(target(tk, vis))
        fk = tk[flip_indices].copy()
        fk[:, 0] = 255 - fk[:, 0]
        heat_flipped.append(target(fk, vis))
    heat, heat_flipped = torch.stack(heat), torch.stack(heat_flipped)

    for flip_test in (False, True, 'shifted'):
        metric = MpiiPCKAccuracy(norm_item='head')
        metric.dataset_meta = ds.metainfo
        if flip_test == 'shifted':
            # control: the same heatmaps 16 cells (64 px) to the right must fail
            hm = torch.roll(heat, 16, dims=-1)
        elif flip_test:
            # what HeatmapHead.predict does with [orig, flipped] features
            hm = (heat + flip_heatmaps(heat_flipped, flip_indices=flip_indices,
                                       shift_heatmap=True)) * 0.5
        else:
            hm = heat
        preds = model.head.decode(hm)
        out = model.add_pred_to_datasample(preds, None, copy.deepcopy(samples))
        metric.process([], [s.to_dict() for s in out])
        res = metric.evaluate(len(out))
        if flip_test == 'shifted':
            assert res['PCK'] < 50.0, res
        else:
            assert res['PCK'] == pytest.approx(100.0), (flip_test, res)  # PCKh@0.5
