"""Data set converters (gst_mm.datasets.converters, tools/dataset_converters/*).

Every test writes small source files in the real format (``.mat`` through
scipy / h5py, ``.txt``, ``.json``, JPEGs through OpenCV), converts them and reads
the result back through the layout reader and ``CrowdCountingDataset``.
"""
import json
import os
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest
import scipy.io as scipy_io

from gst_mm.datasets import converters as C
from gst_mm.datasets.layout import ANN_DIR, IMG_DIR, LayoutError, read_annotation, read_split

# small limits keep the tests fast; the default [512, 2048] is exercised by the CLI test
SMALL = C.ConvertOptions(min_short=64, max_short=96)


# ----------------------------------------------------------------------------
# writers of source files in each real format
# ----------------------------------------------------------------------------
def dotted_image(width, height, points, radius=1, value=255, bg=20):
    """Dark BGR image with a bright (2 radius + 1)^2 square on the pixel of each point."""
    img = np.full((height, width, 3), bg, np.uint8)
    for x, y in points:
        j, i = int(np.floor(x)), int(np.floor(y))
        img[max(0, i - radius):i + radius + 1, max(0, j - radius):j + radius + 1] = value
    return img


def write_jpg(path, img):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img, [int(cv2.IMWRITE_JPEG_QUALITY), 100])


def write_shanghaitech_mat(path, points):
    os.makedirs(osp.dirname(path), exist_ok=True)
    info = np.empty((1, 1), dtype=object)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    info[0, 0] = {'location': pts, 'number': np.array([[float(len(pts))]])}
    scipy_io.savemat(path, {'image_info': info})


def write_qnrf_mat(path, points):
    os.makedirs(osp.dirname(path), exist_ok=True)
    scipy_io.savemat(path, {'annPoints': np.asarray(points, np.float64).reshape(-1, 2)})


def write_jhu_txt(path, points, boxes):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for (x, y), (w, h) in zip(points, boxes):
            f.write(f'{x} {y} {w} {h} 1 0\n')


def write_nwpu_json(path, points, boxes=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    d = {'img_id': osp.basename(path).replace('.json', '.jpg'), 'human_num': len(points),
         'points': [list(map(float, p)) for p in points]}
    if boxes is not None:
        d['boxes'] = [list(map(float, b)) for b in boxes]
    with open(path, 'w') as f:
        json.dump(d, f)


def random_points(rng, n, width, height, margin=3):
    return np.stack([rng.uniform(margin, width - margin, n),
                     rng.uniform(margin, height - margin, n)], 1)


# (source name -> points, size) for a few images of each data set
def make_shanghaitech(root, rng):
    truth = {}
    for folder, split in (('train_data', 'train'), ('test_data', 'test')):
        for k, n in ((1, 5), (2, 0), (3, 3)):  # IMG_2: an empty image
            w, h = int(rng.integers(70, 120)), int(rng.integers(50, 70))
            pts = random_points(rng, n, w, h)
            write_jpg(osp.join(root, folder, 'images', f'IMG_{k}.jpg'), dotted_image(w, h, pts))
            write_shanghaitech_mat(osp.join(root, folder, 'ground-truth', f'GT_IMG_{k}.mat'), pts)
            truth[f'{split}_IMG_{k}'] = (pts, (w, h), None)
    return truth


def make_ucf_qnrf(root, rng):
    truth = {}
    for folder, split in (('Train', 'train'), ('Test', 'test')):
        for k, n in ((1, 4), (2, 6)):  # same file names in both splits
            w, h = int(rng.integers(110, 140)), int(rng.integers(100, 130))  # shrunk to 96
            pts = random_points(rng, n, w, h)
            write_jpg(osp.join(root, folder, f'img_{k:04d}.jpg'), dotted_image(w, h, pts))
            write_qnrf_mat(osp.join(root, folder, f'img_{k:04d}_ann.mat'), pts)
            truth[f'{split}_img_{k:04d}'] = (pts, (w, h), None)
    return truth


def make_jhu_crowd(root, rng):
    truth = {}
    for split, stems in (('train', ('0001', '0002')), ('val', ('0003', )), ('test', ('0004', ))):
        for stem in stems:
            w, h = int(rng.integers(70, 90)), int(rng.integers(60, 80))
            n = 0 if stem == '0002' else 4
            pts = random_points(rng, n, w, h)
            boxes = rng.uniform(4, 12, (n, 2))
            write_jpg(osp.join(root, split, 'images', f'{stem}.jpg'), dotted_image(w, h, pts))
            write_jhu_txt(osp.join(root, split, 'gt', f'{stem}.txt'), pts, boxes)
            truth[f'{split}_{stem}'] = (pts, (w, h), boxes)
    return truth


def make_nwpu_crowd(root, rng):
    truth = {}
    lists = {'train': ['0001', '0002'], 'val': ['0003'], 'test': ['0004', '0005']}
    for split, ids in lists.items():
        with open(osp.join(root, f'{split}.txt'), 'w') as f:
            for image_id in ids:
                f.write(f'{image_id} 1 2\n')  # id, illumination, scene level
        for image_id in ids:
            w, h = int(rng.integers(70, 90)), int(rng.integers(60, 80))
            n = 3 if split != 'test' else 0
            pts = random_points(rng, n, w, h)
            wh = rng.uniform(4, 12, (n, 2))
            write_jpg(osp.join(root, 'images', f'{image_id}.jpg'), dotted_image(w, h, pts))
            if split != 'test':  # NWPU test annotations are not public
                boxes = np.concatenate([pts - wh / 2, pts + wh / 2], 1)
                write_nwpu_json(osp.join(root, 'jsons', f'{image_id}.json'), pts, boxes)
            truth[f'{split}_{image_id}'] = (pts, (w, h), wh)
    return truth


MAKERS = {'shanghaitech': make_shanghaitech, 'ucf_qnrf': make_ucf_qnrf,
          'jhu_crowd': make_jhu_crowd, 'nwpu_crowd': make_nwpu_crowd}
TOOLS = {'shanghaitech': 'shanghaitech', 'ucf_qnrf': 'ucf_qnrf', 'jhu_crowd': 'jhu_crowd',
         'nwpu_crowd': 'nwpu_crowd'}


def expected_size(w, h, options=SMALL):
    short = min(w, h)
    r = 1.0
    if short < options.min_short:
        r = options.min_short / short
    elif short > options.max_short:
        r = options.max_short / short
    return int(round(w * r)), int(round(h * r))


def bright_centroid(img, x, y, r=4):
    """Brightness-weighted centroid (pixel centres at +0.5) of a window around (x, y)."""
    g = img.astype(np.float64).mean(2)
    h, w = g.shape
    i0, i1 = max(0, int(y) - r), min(h, int(y) + r + 1)
    j0, j1 = max(0, int(x) - r), min(w, int(x) + r + 1)
    win = g[i0:i1, j0:j1] - np.median(g)
    win = np.clip(win, 0, None)
    ii, jj = np.mgrid[i0:i1, j0:j1]
    return (win * (jj + 0.5)).sum() / win.sum(), (win * (ii + 0.5)).sum() / win.sum()


# ----------------------------------------------------------------------------
# every format: convert, read back through the layout and the data set
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', sorted(MAKERS))
def test_format_round_trip(fmt, tmp_path):
    rng = np.random.default_rng(7)
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    os.makedirs(src)
    truth = MAKERS[fmt](src, rng)
    summary = C.convert_dataset(fmt, src, out, SMALL, progress=False, val_fraction=0.5)
    assert not summary.failures, summary.failures
    assert summary.images == len(truth)

    for name, (pts, (w, h), boxes) in truth.items():
        ann = read_annotation(osp.join(out, ANN_DIR, f'{name}.json'))
        nw, nh = expected_size(w, h)
        assert (ann.width, ann.height) == (nw, nh)
        img = cv2.imread(osp.join(out, IMG_DIR, ann.image))
        assert img.shape[:2] == (nh, nw)
        sx, sy = nw / w, nh / h
        unlabelled = fmt == 'nwpu_crowd' and name.startswith('test_')
        want = np.zeros((0, 2)) if unlabelled else pts * [sx, sy]
        np.testing.assert_allclose(ann.points, want, atol=1e-3)
        if fmt in ('jhu_crowd', 'nwpu_crowd') and len(want):
            # box-derived covariances: std = side / 4, scaled with the image
            want_cov = np.zeros((len(pts), 2, 2))
            want_cov[:, 0, 0] = (boxes[:, 0] / 4 * sx) ** 2
            want_cov[:, 1, 1] = (boxes[:, 1] / 4 * sy) ** 2
            np.testing.assert_allclose(ann.covariances, want_cov, rtol=1e-4, atol=1e-4)
        else:
            assert ann.covariances is None

    # split lists: the source splits; a val split for sources without one
    splits = {s: read_split(osp.join(out, f'{s}.txt')) for s in ('train', 'val', 'test')}
    for split, names in splits.items():
        assert names, split
        if split != 'val':
            assert all(n.startswith(split + '_') for n in names)
    assert sorted(set(sum(splits.values(), []))) == sorted(truth)
    assert not set(splits['train']) & set(splits['val'])
    if fmt == 'nwpu_crowd':
        assert summary.unlabelled_images == 2
        assert 'benchmark server' in summary.format()
    with open(osp.join(out, 'conversion_report.json')) as f:
        assert json.load(f)['images'] == len(truth)


@pytest.mark.parametrize('fmt', ['shanghaitech', 'jhu_crowd'])
def test_round_trip_through_dataset(fmt, tmp_path):
    pytest.importorskip('mmengine')
    from gst_mm.datasets import CrowdCountingDataset

    rng = np.random.default_rng(3)
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    os.makedirs(src)
    truth = MAKERS[fmt](src, rng)
    C.convert_dataset(fmt, src, out, SMALL, progress=False, val_fraction=0.5)
    ds = CrowdCountingDataset(data_root=out, ann_file='train.txt',
                              pipeline=[dict(type='LoadImageFromFile')])
    names = read_split(osp.join(out, 'train.txt'))
    assert len(ds) == len(names)
    for i in range(len(ds)):
        item = ds[i]
        pts, (w, h), _ = truth[item['img_id']]
        nw, nh = expected_size(w, h)
        assert item['img'].shape[:2] == (nh, nw)
        assert item['ori_count'] == len(pts)
        np.testing.assert_allclose(item['points'], pts * [nw / w, nh / h], atol=1e-3)
        assert ('gt_covariances' in item) == (fmt == 'jhu_crowd' and len(pts) > 0)


# ----------------------------------------------------------------------------
# resizing keeps points on the image content
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('src_size,limits', [((120, 90), (180, 400)),   # up x2
                                             ((300, 200), (64, 100)),   # down x0.5
                                             ((97, 61), (100, 400))])   # odd factors
def test_resize_keeps_points_on_the_dots(src_size, limits, tmp_path):
    rng = np.random.default_rng(11)
    w, h = src_size
    # dots on pixel centres, away from each other and from the border
    grid = np.stack(np.meshgrid(np.arange(10, w - 10, 20), np.arange(10, h - 10, 20)), -1)
    pts = grid.reshape(-1, 2) + 0.5 + rng.integers(-3, 4, (grid.size // 2, 2))
    radius = 2 if w > 200 else 1
    src = str(tmp_path / 'img.jpg')
    write_jpg(src, dotted_image(w, h, pts, radius=radius))
    res = C.convert_sample(src, pts, None, str(tmp_path / 'out'), 'img',
                           min_short=limits[0], max_short=limits[1])
    ann = read_annotation(str(tmp_path / 'out' / ANN_DIR / 'img.json'))
    img = cv2.imread(str(tmp_path / 'out' / IMG_DIR / 'img.jpg'))
    assert res.resized and img.shape[:2] == (ann.height, ann.width)
    assert min(ann.width, ann.height) in (limits[0], limits[1])
    bright = img.astype(float).mean(2)
    for x, y in ann.points:
        assert bright[int(y), int(x)] > 128  # the converted point sits on its dot
        cx, cy = bright_centroid(img, x, y)
        assert abs(cx - x) < 0.35 and abs(cy - y) < 0.35, (x, y, cx, cy)


def test_resize_scales_covariances(tmp_path):
    src = str(tmp_path / 'img.jpg')
    write_jpg(src, dotted_image(100, 50, []))
    cov = np.array([[[4.0, 1.0], [1.0, 9.0]]])
    C.convert_sample(src, [[10, 10]], cov, str(tmp_path / 'out'), 'img', min_short=100,
                     max_short=200)  # x2 on both axes
    ann = read_annotation(str(tmp_path / 'out' / ANN_DIR / 'img.json'))
    np.testing.assert_allclose(ann.covariances[0], 4 * cov[0], rtol=1e-5)


def test_no_resize_copies_jpeg_bytes(tmp_path):
    src = str(tmp_path / 'img.jpg')
    write_jpg(src, dotted_image(80, 70, [[5, 5]]))
    res = C.convert_sample(src, [[5.5, 5.5]], None, str(tmp_path / 'out'), 'img',
                           min_short=64, max_short=96)
    assert not res.resized
    with open(src, 'rb') as a, open(tmp_path / 'out' / IMG_DIR / 'img.jpg', 'rb') as b:
        assert a.read() == b.read()


# ----------------------------------------------------------------------------
# cleaning and bad input
# ----------------------------------------------------------------------------
def test_out_of_image_points_clipped_or_dropped_with_warning(tmp_path):
    src = str(tmp_path / 'img.jpg')
    write_jpg(src, dotted_image(80, 64, []))
    pts = [[10, 10],       # inside
           [81.5, 20],     # 1.5 px right of the image: clipped
           [30, -1.0],     # 1 px above: clipped
           [95, 30],       # 15 px out: dropped
           [np.nan, 3]]    # non-finite: dropped
    cov = np.tile(np.eye(2), (5, 1, 1)) * np.arange(1, 6)[:, None, None]
    with pytest.warns(UserWarning, match=r'GT_x\.mat.*dropped 2 .*clipped 2'):
        res = C.convert_sample(src, pts, cov, str(tmp_path / 'out'), 'x', min_short=64,
                               max_short=96, source='GT_x.mat')
    assert (res.dropped, res.clipped, res.num_points) == (2, 2, 3)
    ann = read_annotation(str(tmp_path / 'out' / ANN_DIR / 'x.json'))
    np.testing.assert_allclose(ann.points, [[10, 10], [80 - 1e-3, 20], [30, 0]], atol=1e-4)
    # the covariances of the kept points stay with their points
    np.testing.assert_allclose(ann.covariances[:, 0, 0], [1, 2, 3])


def test_points_inside_give_no_warning(tmp_path):
    src = str(tmp_path / 'img.jpg')
    write_jpg(src, dotted_image(80, 64, []))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = C.convert_sample(src, [[0, 0], [80, 64], [40, 30]], None, str(tmp_path / 'o'),
                               'x', min_short=64, max_short=96)
    assert res.num_points == 3 and res.clipped == 0


def test_corrupt_files_reported_and_skipped(tmp_path):
    rng = np.random.default_rng(5)
    src, out = tmp_path / 'src', str(tmp_path / 'out')
    os.makedirs(src)
    truth = make_jhu_crowd(str(src), rng)
    # 0001: corrupt annotation; 0003: truncated image; 0004: missing annotation
    (src / 'train' / 'gt' / '0001.txt').write_text('10 20 4 4 1 0\nnot numbers\n')
    (src / 'val' / 'images' / '0003.jpg').write_bytes(b'\xff\xd8\xff\xe0 broken')
    os.remove(src / 'test' / 'gt' / '0004.txt')
    messages = []
    summary = C.convert_dataset('jhu_crowd', str(src), out, SMALL, progress=False,
                                on_message=messages.append)
    assert summary.images == len(truth) - 3
    assert len(summary.failures) == 3
    text = '\n'.join(summary.failures)
    assert osp.join('train', 'gt', '0001.txt') + ':2' in text  # file and line
    assert osp.join('val', 'images', '0003.jpg') in text
    assert osp.join('test', 'gt', '0004.txt') in text
    assert sum(m.startswith('error (skipped)') for m in messages) == 3
    assert read_split(osp.join(out, 'train.txt')) == ['train_0002']
    assert not osp.exists(osp.join(out, ANN_DIR, 'train_0001.json'))


def test_truncated_jpeg_reported_and_others_converted(tmp_path):
    rng = np.random.default_rng(9)
    src, out = tmp_path / 'src', str(tmp_path / 'out')
    os.makedirs(src)
    truth = make_shanghaitech(str(src), rng)
    bad = src / 'train_data' / 'images' / 'IMG_3.jpg'
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])  # a copy cut short: no end-of-image marker
    messages = []
    summary = C.convert_dataset('shanghaitech', str(src), out, SMALL, progress=False,
                                val_fraction=0.5, on_message=messages.append)
    # reported as the image reader words it (one line naming the file), not as a crash
    assert len(summary.failures) == 1
    assert summary.failures[0].startswith(f'{bad}: truncated JPEG'), summary.failures
    assert [m for m in messages if m.startswith('error (skipped)')] == \
        [f'error (skipped): {summary.failures[0]}']
    converted = sorted(set(truth) - {'train_IMG_3'})
    assert summary.images == len(converted)
    assert sorted(osp.splitext(f)[0] for f in os.listdir(osp.join(out, ANN_DIR))) == converted
    splits = {s: read_split(osp.join(out, f'{s}.txt')) for s in ('train', 'val', 'test')}
    assert sorted(splits['train'] + splits['val'] + splits['test']) == converted


@pytest.mark.parametrize('reader,content', [
    (C.read_shanghaitech_mat, b'MATLAB 5.0 MAT-file garbage'),
    (C.read_ucf_qnrf_mat, b''),
    (C.read_nwpu_crowd_json, b'{"points": [[1, 2], '),
    (C.read_nwpu_crowd_json, b'{"boxes": []}'),
    (C.read_jhu_crowd_txt, b'1\n'),
])
def test_readers_name_the_bad_file(reader, content, tmp_path):
    path = str(tmp_path / 'bad_annotation.dat')
    with open(path, 'wb') as f:
        f.write(content)
    with pytest.raises(LayoutError, match='bad_annotation.dat'):
        reader(path)


def test_qnrf_reader_reads_matlab_v73(tmp_path):
    h5py = pytest.importorskip('h5py')
    path = str(tmp_path / 'img_0001_ann.mat')
    pts = np.array([[1.5, 2.5], [30.0, 40.0], [7.0, 8.0]])
    with h5py.File(path, 'w', userblock_size=512) as f:
        f['annPoints'] = pts.T  # MATLAB is column-major: stored (2, N)
    header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .'
    with open(path, 'r+b') as f:
        f.write(header.ljust(116, b' ') + b'\0' * 8 + b'\x00\x02IM')
    got, cov = C.read_ucf_qnrf_mat(path)
    np.testing.assert_allclose(got, pts)
    assert cov is None


def test_nwpu_boxes_mismatch_ignored_with_warning(tmp_path):
    path = str(tmp_path / '0001.json')
    write_nwpu_json(path, [[1, 2], [3, 4]], boxes=[[0, 0, 4, 4]])
    with pytest.warns(UserWarning, match='0001.json'):
        pts, cov = C.read_nwpu_crowd_json(path)
    assert pts.shape == (2, 2) and cov is None


def test_val_hold_out_is_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    src = str(tmp_path / 'src')
    os.makedirs(src)
    make_ucf_qnrf(src, rng)
    outs = []
    for k in range(2):
        out = str(tmp_path / f'out{k}')
        C.convert_dataset('ucf_qnrf', src, out, SMALL, progress=False, val_fraction=0.5, seed=3)
        outs.append({s: read_split(osp.join(out, f'{s}.txt')) for s in ('train', 'val', 'test')})
    assert outs[0] == outs[1]
    assert len(outs[0]['val']) == 1 and len(outs[0]['train']) == 1
    out = str(tmp_path / 'out_noval')
    C.convert_dataset('ucf_qnrf', src, out, SMALL, progress=False, val_fraction=0.0)
    assert read_split(osp.join(out, 'val.txt')) == read_split(osp.join(out, 'test.txt'))


def test_missing_source_folder_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / 'somewhere')
    with pytest.raises(LayoutError, match='not a ShanghaiTech'):
        C.list_shanghaitech(str(tmp_path / 'somewhere'))
    with pytest.raises(LayoutError, match='split list not found'):
        os.makedirs(tmp_path / 'nwpu' / 'images')
        C.list_nwpu_crowd(str(tmp_path / 'nwpu'))


# ----------------------------------------------------------------------------
# command lines
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', sorted(TOOLS))
def test_cli_default_limits(fmt, tmp_path, load_tool, capsys):
    rng = np.random.default_rng(2)
    src, out = str(tmp_path / 'src'), str(tmp_path / 'out')
    os.makedirs(src)
    truth = MAKERS[fmt](src, rng)
    tool = load_tool(osp.join('dataset_converters', TOOLS[fmt]))
    extra = ['--workers', '2'] if fmt == 'jhu_crowd' else []
    assert tool.main([src, out, '--quiet'] + extra) == 0
    text = capsys.readouterr().out
    assert f'images: {len(truth)}' in text and 'failed (skipped): 0' in text
    for name, (pts, (w, h), _) in truth.items():
        ann = read_annotation(osp.join(out, ANN_DIR, f'{name}.json'))
        assert min(ann.width, ann.height) == 512  # the tiny sources are scaled up to 512
        if len(ann.points):
            np.testing.assert_allclose(ann.points, pts * [ann.width / w, ann.height / h],
                                       atol=1e-3)
    if fmt == 'shanghaitech':  # resuming keeps what is there
        assert tool.main([src, out, '--quiet', '--skip-existing']) == 0
        assert f'already converted (skipped): {len(truth)}' in capsys.readouterr().out


def test_cli_bad_source_returns_error(tmp_path, load_tool, capsys):
    tool = load_tool(osp.join('dataset_converters', 'ucf_qnrf'))
    assert tool.main([str(tmp_path / 'nowhere'), str(tmp_path / 'out'), '--quiet']) == 1
    assert 'UCF-QNRF source folder not found' in capsys.readouterr().err
