"""One offline check of the GPU paths (the gsplat backend and the torch renderer on
CUDA have never run here): fits, their agreement with the CPU fit, the loss step, and
the pose head step, in one script that needs only torch, numpy, h5py and OpenCV.

    python tools/benchmark/gpu.py [--quick] [--device cuda] [--out-dir work_dirs/gpu_check]

gsplat, mmengine and mmpose are used when they import; each part that needs one is
skipped with a line otherwise. Nothing is downloaded (random-init weights). On a CUDA
machine the full run takes a few minutes; ``--quick`` (small sizes, any device, the
CPU when there is no GPU) is run by the test suite so that the script cannot rot.

Writes ``gpu_check.json`` and ``gpu_check.md`` (a short table) into ``--out-dir``.
JSON schema (docs/benchmarks.md, "GPU check"):

* ``env``: ``torch``, ``device``, ``device_name``, ``cuda``, ``gsplat``, ``mmpose``
  (``true`` or the reason it is unavailable);
* ``fits``: one record per scene and renderer: ``scene`` (``"WxH/N"``), ``renderer``
  (``torch-sum`` on the device, ``gsplat-alpha``, ``cpu-sum``), ``seconds``
  (synchronised), ``iterations``, ``std_rel_err`` (median, against the scene's true
  stds), ``peak_mem_mb`` (device memory, ``null`` on the CPU), or ``skipped``;
* ``agreement``: per scene, the device fit against the CPU fit: ``std_rel_diff_median``,
  ``std_rel_diff_max``, ``color_abs_diff_max``;
* ``losses``: per ``points`` and ``grid``: ``kernel_build_s``, ``gst_step_s``,
  ``dmcount_step_s`` (forward + backward on the device), ``dmcount_over_gst``;
* ``pose``: ``gst_step_s``, ``mse_step_s``, ``ratio`` (one training step of HRNet-W32 at
  256x256, batch 32, GST head vs MSE head) or ``skipped``;
* ``seconds``: the whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List

import torch

FULL_SCENES = ((960, 1920, 953), (1744, 4110, 4535))
QUICK_SCENES = ((96, 192, 30), )
FULL_LOSSES = ((1000, 64), (4000, 64), (1000, 128), (4000, 128))
QUICK_LOSSES = ((100, 16), )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small sizes (the test suite)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out-dir', default=osp.join('work_dirs', 'gpu_check'))
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _status(module: str):
    try:
        __import__(module)
        return True
    except Exception as e:  # noqa: BLE001 - any import failure: the part is skipped
        return f'{type(e).__name__}: {e}'.splitlines()[0]


def environment(device: torch.device) -> Dict:
    from gst_mm.splatting.render import gsplat_status
    ok, reason = gsplat_status()
    return dict(torch=torch.__version__, device=str(device), cuda=torch.cuda.is_available(),
                device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                             else 'cpu'),
                gsplat=True if ok else reason, mmpose=_status('mmpose'))


def _fit(scene, device: torch.device, **kw) -> Dict:
    from gst_mm.splatting import fit_gaussians
    from gst_mm.splatting.synthetic import recovery_errors
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    g, info = fit_gaussians(scene.image, scene.points, return_info=True, device=str(device),
                            **kw)
    _sync(device)
    seconds = time.perf_counter() - t0
    err = recovery_errors(scene.scales, scene.angles, g.scales.numpy(), g.angles.numpy())
    return dict(seconds=seconds, iterations=info.iterations, std_rel_err=err['std_rel_err'],
                peak_mem_mb=(torch.cuda.max_memory_allocated(device) / 2**20
                             if device.type == 'cuda' else None)), g


def fits(device: torch.device, scenes, env: Dict) -> tuple:
    from gst_mm.splatting.synthetic import make_scene
    records: List[Dict] = []
    agreement: Dict[str, Dict] = {}
    for h, w, n in scenes:
        scene = make_scene(h, w, n, seed=0)
        name = f'{w}x{h}/{n}'
        rec, g_dev = _fit(scene, device, backend='torch', compositing='sum')
        records.append(dict(rec, scene=name, renderer=f'torch-sum ({device.type})'))
        if env['gsplat'] is True and device.type == 'cuda':
            rec, _ = _fit(scene, device, backend='gsplat', compositing='alpha')
            records.append(dict(rec, scene=name, renderer='gsplat-alpha'))
        else:
            records.append(dict(scene=name, renderer='gsplat-alpha',
                                skipped=f"gsplat: {env['gsplat']}"))
        rec, g_cpu = _fit(scene, torch.device('cpu'), backend='torch', compositing='sum')
        records.append(dict(rec, scene=name, renderer='cpu-sum'))
        rel = (g_dev.scales - g_cpu.scales).abs() / g_cpu.scales
        agreement[name] = dict(std_rel_diff_median=float(rel.median()),
                               std_rel_diff_max=float(rel.max()),
                               color_abs_diff_max=float((g_dev.colors - g_cpu.colors).abs().max()))
    return records, agreement


def losses(device: torch.device, cases) -> List[Dict]:
    from gst_mm.transport import build_kernel, dm_count_loss, transport_loss
    out = []
    stride = 8
    for n, side in cases:
        gen = torch.Generator().manual_seed(n)
        pts = (torch.rand(n, 2, generator=gen) * side * stride).to(device)
        cov = (torch.eye(2) * 64.0).expand(n, 2, 2).contiguous().to(device)
        density = torch.rand(side, side, generator=gen).to(device).requires_grad_()
        _sync(device)
        t0 = time.perf_counter()
        kernel = build_kernel(pts, cov, (side, side), stride)
        _sync(device)
        build_s = time.perf_counter() - t0

        def step(fn):
            fn().backward()  # warm-up
            _sync(device)
            t = time.perf_counter()
            for _ in range(3):
                fn().backward()
            _sync(device)
            return (time.perf_counter() - t) / 3

        gst = step(lambda: transport_loss(density, kernel))
        dm = step(lambda: dm_count_loss(density, pts, stride)[0])
        out.append(dict(points=n, grid=side, kernel_build_s=build_s, gst_step_s=gst,
                        dmcount_step_s=dm, dmcount_over_gst=dm / gst))
    return out


def pose(device: torch.device, quick: bool, env: Dict) -> Dict:
    """One training step of the pose model with the GST head and with the MSE head on
    random tensors (random-init weights; kernels and costs of random joints)."""
    if env['mmpose'] is not True:
        return dict(skipped=f"mmpose: {env['mmpose']}")
    from mmengine.config import Config
    from mmengine.structures import InstanceData, PixelData
    from mmpose.structures import PoseDataSample

    import gst_mm  # noqa: F401
    from gst_mm.registry import MODELS
    from gst_mm.transport import background_costs, plan_costs, point_costs, point_kernels
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if quick:
        names = ('configs/synthetic_pose/gst_res18-half_1xb32-1000it_synthetic-64x64.py',
                 'configs/synthetic_pose/td-hm_res18-half_1xb32-1000it_synthetic-64x64.py')
        size, batch, steps = 64, 2, 2
    else:
        names = ('configs/mpii/gst_hrnet-w32_8xb64-210e_mpii-256x256.py',
                 'configs/mpii/td-hm_hrnet-w32_8xb64-210e_mpii-256x256.py')
        size, batch, steps = 256, 32, 50
    times = {}
    for name, key in zip(names, ('gst', 'mse')):
        cfg = Config.fromfile(osp.join(root, name))
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model).to(device).train()
        k, hm = cfg.model.head.out_channels, size // 4 if not quick else size // 2
        stride = size // hm
        gen = torch.Generator().manual_seed(0)
        samples = []
        for _ in range(batch):
            joints = torch.rand(k, 2, generator=gen) * (size - 1)
            cov = torch.eye(2).expand(k, 2, 2).contiguous() * float(stride) ** 2
            kern = point_kernels(joints + stride / 2, cov, (hm, hm), stride)
            cost = plan_costs(kern, point_costs(joints + stride / 2, cov, (hm, hm), stride),
                              background_costs(cov, stride))
            s = PoseDataSample(metainfo=dict(img_path='random.jpg'))
            s.gt_fields = PixelData(heatmaps=torch.rand(k, hm, hm, generator=gen),
                                    gst_kernels=kern, gst_costs=cost)
            s.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, k))
            samples.append(s.to(device))
        inputs = torch.rand(batch, 3, size, size, generator=gen).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            losses = model.loss(inputs, samples)
            total = sum(v for n_, v in losses.items() if n_.startswith('loss'))
            opt.zero_grad()
            total.backward()
            opt.step()

        step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        times[key] = (time.perf_counter() - t0) / steps
    return dict(gst_step_s=times['gst'], mse_step_s=times['mse'],
                ratio=times['gst'] / times['mse'], steps=steps, batch=batch, size=size)


def markdown(record: Dict) -> str:
    env = record['env']
    lines = [f"GPU check on {env['device_name']} (torch {env['torch']}, gsplat "
             f"{'yes' if env['gsplat'] is True else 'no'}), {record['seconds']:.0f} s.", '',
             '| scene | renderer | s | iterations | std error | peak MB |',
             '|---|---|---|---|---|---|']
    for f in record['fits']:
        if 'skipped' in f:
            lines.append(f"| {f['scene']} | {f['renderer']} | skipped: {f['skipped']} | | | |")
            continue
        mem = '-' if f['peak_mem_mb'] is None else f"{f['peak_mem_mb']:.0f}"
        lines.append(f"| {f['scene']} | {f['renderer']} | {f['seconds']:.2f} | {f['iterations']} "
                     f"| {100 * f['std_rel_err']:.1f} % | {mem} |")
    lines += ['', '| scene | std rel. diff median / max (device vs CPU) | colour diff max |',
              '|---|---|---|']
    for name, a in record['agreement'].items():
        lines.append(f"| {name} | {100 * a['std_rel_diff_median']:.2f} % / "
                     f"{100 * a['std_rel_diff_max']:.2f} % | {a['color_abs_diff_max']:.4f} |")
    lines += ['', '| points | grid | kernel build s | GST step s | DM-Count step s | ratio |',
              '|---|---|---|---|---|---|']
    for r in record['losses']:
        lines.append(f"| {r['points']} | {r['grid']} | {r['kernel_build_s']:.4f} | "
                     f"{r['gst_step_s']:.4f} | {r['dmcount_step_s']:.4f} | "
                     f"{r['dmcount_over_gst']:.1f} |")
    p = record['pose']
    lines += ['', 'Pose step: ' + (f"skipped ({p['skipped']})" if 'skipped' in p else
                                   f"GST {p['gst_step_s']:.3f} s, MSE {p['mse_step_s']:.3f} s, "
                                   f"ratio {p['ratio']:.2f} (batch {p['batch']}, {p['size']} px)")]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> Dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('gpu.py: error: --device cuda but CUDA is not available '
                         '(use --device cpu, e.g. with --quick)')
    t0 = time.perf_counter()
    env = environment(device)
    print(f'[gpu] {json.dumps(env)}', flush=True)
    fit_records, agreement = fits(device, QUICK_SCENES if args.quick else FULL_SCENES, env)
    loss_records = losses(device, QUICK_LOSSES if args.quick else FULL_LOSSES)
    try:
        pose_record = pose(device, args.quick, env)
    except Exception as e:  # noqa: BLE001 - an optional part: report and go on
        pose_record = dict(skipped=f'{type(e).__name__}: {e}'.splitlines()[0])
    record = dict(env=env, fits=fit_records, agreement=agreement, losses=loss_records,
                  pose=pose_record, quick=args.quick, seconds=time.perf_counter() - t0)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'gpu_check.json'), 'w') as f:
        json.dump(record, f, indent=1)
    with open(osp.join(args.out_dir, 'gpu_check.md'), 'w') as f:
        f.write(markdown(record))
    print(markdown(record))
    return record


if __name__ == '__main__':
    main()
