"""Counts and density maps of a trained counter for your own images.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out-dir DIR
        [--no-png] [--cfg-options key=value ...]

``INPUT`` is an image file or a folder (its images, not recursive; ``.jpg .jpeg .png
.bmp .tif .tiff .webp``). No annotations are needed. Each image goes through the
config's test pipeline and model exactly as ``tools/test.py`` does (so the counts are
the same; large images are split into the model's ``test_cfg.tile_size`` tiles and the
tile counts summed). Writes, atomically:

* ``DIR/counts.csv``: ``image,count`` (one row per image read, in input order);
* ``DIR/<image stem>_density.png`` (unless ``--no-png``): the image and its predicted
  density side by side, with the count in the title.

An unreadable image (missing, truncated, not an image) is skipped with one line on
stderr naming it; the others go on. Exit code 0 when every image was read, 1 when some
were skipped, 2 for a setup error (one line).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import os.path as osp
import sys
from typing import List, Tuple

import numpy as np  # noqa: I001

import gst_mm  # noqa: F401,I001  (first: registers gst_mm components, quiets mmengine)
from gst_mm.utils.config import add_run_arguments, load_run_config, run_tool

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Counts and density maps for your own images')
    p.add_argument('config', help='the counter config the checkpoint was trained with')
    p.add_argument('checkpoint', help='checkpoint file (.pth)')
    p.add_argument('inputs', nargs='+', help='image files or folders of images')
    p.add_argument('--out-dir', required=True, help='where counts.csv and the PNGs go')
    p.add_argument('--no-png', action='store_true', help='write counts.csv only')
    add_run_arguments(p)
    return p.parse_args(argv)


def list_images(inputs: List[str]) -> List[str]:
    """Image files of ``inputs`` (files as given, folders' images sorted by name).

    Raises:
        FileNotFoundError: an input that is neither a file nor a folder, or no image.
    """
    out: List[str] = []
    for item in inputs:
        if osp.isdir(item):
            out += sorted(osp.join(item, n) for n in os.listdir(item)
                          if osp.splitext(n)[1].lower() in IMAGE_EXTS)
        elif osp.isfile(item) or osp.splitext(item)[1].lower() in IMAGE_EXTS:
            out.append(item)  # a missing image file is reported (skipped) when read
        else:
            raise FileNotFoundError(f'{item}: no such image file or folder')
    if not out:
        raise FileNotFoundError(f'no images in {", ".join(inputs)}')
    return out


def build_model(cfg, checkpoint: str):
    """The config's model with the checkpoint's weights, in eval mode (no pretrained
    download: backbone ``init_cfg`` is dropped, the checkpoint has the weights)."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from gst_mm.registry import MODELS
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    init_default_scope(cfg.get('default_scope', 'gst_mm'))
    model_cfg = cfg.model.copy()
    if 'backbone' in model_cfg:
        model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def predict(model, pipeline, img_path: str) -> Tuple[float, np.ndarray, np.ndarray]:
    """``(count, density (h, w), image RGB)`` of one image through the test pipeline."""
    from mmengine.dataset import pseudo_collate
    results = pipeline(dict(img_path=img_path, img_id=osp.splitext(osp.basename(img_path))[0],
                            points=np.zeros((0, 2), np.float32)))
    sample = model.test_step(pseudo_collate([results]))[0]
    image = results['inputs'].numpy().transpose(1, 2, 0)[..., ::-1]  # BGR -> RGB
    density = sample.pred_density.detach().cpu().numpy().reshape(sample.pred_density.shape[-2:])
    return float(sample.pred_count), density, image


def density_figure(image: np.ndarray, density: np.ndarray, count: float,
                   name: str) -> np.ndarray:
    """The image and its density (upsampled to the image) side by side."""
    from gst_mm.visualization import colorize_density, compose_panels, upsample
    h, w = image.shape[:2]
    dens = np.zeros((h, w, 3), np.uint8)
    s = max(1, int(round(h / max(density.shape[0], 1))))
    up = upsample(colorize_density(density), (density.shape[0] * s, density.shape[1] * s))
    dens[:min(h, up.shape[0]), :min(w, up.shape[1])] = up[:h, :w]
    return compose_panels([(name, np.ascontiguousarray(image)),
                           (f'predicted density: {count:.1f}', dens)], height=360)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _run(args) -> int:
    import cv2
    from mmengine.dataset import Compose
    from tqdm import tqdm

    from gst_mm.splatting import ImageReadError, read_image_file
    from gst_mm.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_run_config(args.config, args.cfg_options)
    images = list_images(args.inputs)
    model = build_model(cfg, args.checkpoint)
    pipeline = Compose(list(cfg.test_dataloader.dataset.pipeline))
    os.makedirs(args.out_dir, exist_ok=True)
    rows, skipped = [], 0
    for path in tqdm(images, desc='counting', unit='img', dynamic_ncols=True):
        try:
            read_image_file(path)  # the pipeline's decode; refuses truncated files
            count, density, image = predict(model, pipeline, path)
        except (ImageReadError, OSError, ValueError) as err:
            skipped += 1
            tqdm.write(f'infer.py: skipped {path}: {err}', file=sys.stderr)
            continue
        stem = osp.splitext(osp.basename(path))[0]
        rows.append((path, count))
        if not args.no_png:
            ok, png = cv2.imencode('.png', cv2.cvtColor(
                density_figure(image, density, count, osp.basename(path)), cv2.COLOR_RGB2BGR))
            _atomic_write(osp.join(args.out_dir, f'{stem}_density.png'), png.tobytes())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['image', 'count'])
    writer.writerows((p, repr(c)) for p, c in rows)
    _atomic_write(osp.join(args.out_dir, 'counts.csv'), buf.getvalue().encode())
    print(f'counted {len(rows)} images ({skipped} skipped) -> '
          f'{osp.join(args.out_dir, "counts.csv")}')
    return 1 if skipped else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool('infer.py', lambda: _run(args))


if __name__ == '__main__':
    sys.exit(main())
