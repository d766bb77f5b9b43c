"""Generate the synthetic landmark data set (COCO keypoint format) for pose configs.

    python tools/make_synthetic_pose.py [OUT] [--num-train 400] [--num-val 100]
        [--image-size 96] [--seed 0] [--force]

One articulated figure with 11 landmarks per image on a textured background
(``gst_mm.datasets.synthetic_pose``); read by ``gst_mm.SyntheticLandmarkDataset``
(configs/synthetic_pose/). Deterministic: image ``k`` of a split depends only on
``(seed, k)``. An OUT that already holds a data set with the same settings is kept
unless ``--force`` is given.
"""
import argparse
import json
import os.path as osp
import sys
from dataclasses import asdict

from gst_mm.datasets.layout import atomic_write_bytes
from gst_mm.datasets.synthetic_pose import SyntheticPoseConfig, write_dataset

SETTINGS = 'synthetic_pose_config.json'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', nargs='?', default=osp.join('data', 'synthetic_pose'))
    p.add_argument('--num-train', type=int, default=SyntheticPoseConfig.num_train)
    p.add_argument('--num-val', type=int, default=SyntheticPoseConfig.num_val)
    p.add_argument('--image-size', type=int, default=SyntheticPoseConfig.image_size)
    p.add_argument('--seed', type=int, default=SyntheticPoseConfig.seed)
    p.add_argument('--force', action='store_true', help='rewrite an existing data set')
    return p.parse_args(argv)


def make(out: str, cfg: SyntheticPoseConfig, force: bool = False, progress: bool = True) -> bool:
    """Write the data set unless ``out`` holds it already; True when written."""
    settings = osp.join(out, SETTINGS)
    anns = [osp.join(out, 'annotations', f'{s}.json') for s in ('train', 'val')]
    if not force and osp.isfile(settings) and all(osp.isfile(a) for a in anns):
        with open(settings) as f:
            if json.load(f) == asdict(cfg):
                return False
    write_dataset(out, cfg, progress=progress)
    atomic_write_bytes(settings, json.dumps(asdict(cfg), indent=1).encode())
    return True


def main(argv=None):
    args = parse_args(argv)
    if args.num_train <= 0 or args.num_val <= 0 or args.image_size < 32:
        sys.exit('make_synthetic_pose.py: need --num-train, --num-val > 0 and --image-size >= 32')
    cfg = SyntheticPoseConfig(num_train=args.num_train, num_val=args.num_val,
                              image_size=args.image_size, seed=args.seed)
    written = make(args.out, cfg, args.force)
    print(f"{'wrote' if written else 'kept (same settings)'} {args.out}: "
          f'{cfg.num_train} train + {cfg.num_val} val images')


if __name__ == '__main__':
    main()
