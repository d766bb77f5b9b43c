#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) with the verified
# OpenMMLab stack (see docs/environment notes in README.md). Idempotent: a second
# run only checks a stamp and the imports (seconds).
#
# Called by the Makefile targets; not meant to be run by hand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GST_MM_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3}"
STAMP="$VENV/.gst_mm_setup_stamp"
# Built mmcv wheels are kept per (mmcv, torch, python) so a fresh clone on the
# same machine does not rebuild (pip's own wheel cache ignores the torch version).
WHEEL_CACHE="${GST_MM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gst_mm/wheels}"

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMPOSE_VERSION=1.3.2
MMDET_VERSION=3.3.0
XTCOCOTOOLS_VERSION=1.14.3
GSPLAT_VERSION=1.5.3
SETUPTOOLS_SPEC="setuptools>=77,<81"

say() { printf '[setup] %s\n' "$*"; }

# The stamp covers this script and the package metadata: editing either re-runs setup.
fingerprint() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" 2>/dev/null | sha256sum | cut -d' ' -f1
}

check_imports() {
  PYTHONWARNINGS=ignore "$VENV/bin/python" - <<'PY'
import importlib.util
import setuptools
major = int(setuptools.__version__.split('.')[0])
assert 77 <= major < 81, f'setuptools {setuptools.__version__} outside >=77,<81'
import torch, torchvision, mmengine, mmcv, mmcv.ops, mmpose, mmdet, xtcocotools, h5py  # noqa
from mmpose.utils import register_all_modules
register_all_modules()
# gst_mm itself is checked by the tests; here only that the editable install points here.
spec = importlib.util.find_spec('gst_mm')
assert spec is not None, 'gst_mm is not installed in the environment'
PY
}

# The compiled CPU renderer (gst_mm/splatting/csrc) is checked on every run, not only
# when the stamp is stale: an edited kernel source gets a new module name and is built
# here (~30 s, g++ + OpenMP, no network), never at run time. A failed build is not fatal:
# the fit then falls back to the slower pure-torch renderer (and says so when it runs).
build_renderer() {
  if "$VENV/bin/python" "$ROOT/gst_mm/splatting/_compiled.py" build; then
    return 0
  fi
  say "WARNING: the compiled CPU renderer did not build; the torch renderer will be used"
  say "         (needs a C++ compiler with OpenMP; details: $VENV/bin/python" \
      "gst_mm/splatting/_compiled.py build --verbose)"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]]; then
  if check_imports 2>/dev/null; then
    build_renderer
    say "environment $VENV is up to date"
    exit 0
  fi
  say "environment $VENV failed its import check; repairing"
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
export PIP_PROGRESS_BAR=off

say "[1/9] build tools ($SETUPTOOLS_SPEC, wheel, ninja, cython)"
"${PIP[@]}" install -q "$SETUPTOOLS_SPEC" wheel ninja cython packaging

have() { "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('$1') == '$2' else 1)" 2>/dev/null; }

say "[2/9] torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION (PyPI builds, ~3 GB download the first time)"
if have torch "$TORCH_VERSION" && have torchvision "$TORCHVISION_VERSION"; then
  say "      already installed"
else
  # '===' is an exact string match: it skips the local '2.13.0+cpu' wheel that
  # torchvision from PyPI cannot load beside.
  "${PIP[@]}" install -q "torch===$TORCH_VERSION" "torchvision===$TORCHVISION_VERSION" "$SETUPTOOLS_SPEC"
fi

say "[3/9] mmengine $MMENGINE_VERSION"
have mmengine "$MMENGINE_VERSION" || "${PIP[@]}" install -q "mmengine==$MMENGINE_VERSION" "$SETUPTOOLS_SPEC"

PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
MMCV_WHEEL_DIR="$WHEEL_CACHE/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG"
say "[4/9] mmcv $MMCV_VERSION (full, with ops)"
if have mmcv "$MMCV_VERSION" && "$VENV/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  say "      already installed"
else
  if ! ls "$MMCV_WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    say "      building from source: this takes about 6-10 minutes on 2 cores"
    mkdir -p "$MMCV_WHEEL_DIR.tmp"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" FORCE_CUDA=0 \
      "${PIP[@]}" wheel --no-deps --no-build-isolation --no-cache-dir \
      -w "$MMCV_WHEEL_DIR.tmp" "mmcv==$MMCV_VERSION"
    rm -rf "$MMCV_WHEEL_DIR"
    mv "$MMCV_WHEEL_DIR.tmp" "$MMCV_WHEEL_DIR"
  else
    say "      using the wheel built earlier in $MMCV_WHEEL_DIR"
  fi
  "${PIP[@]}" install -q "$MMCV_WHEEL_DIR"/mmcv-*.whl "$SETUPTOOLS_SPEC"
fi

say "[5/9] mmpose $MMPOSE_VERSION and mmdet $MMDET_VERSION (without their broken declared deps)"
"${PIP[@]}" install -q json_tricks munkres scipy six matplotlib opencv-python pillow \
  shapely terminaltables pycocotools tqdm "$SETUPTOOLS_SPEC"
have mmpose "$MMPOSE_VERSION" || "${PIP[@]}" install -q --no-deps "mmpose==$MMPOSE_VERSION"
have mmdet "$MMDET_VERSION" || "${PIP[@]}" install -q --no-deps "mmdet==$MMDET_VERSION"

say "[6/9] xtcocotools $XTCOCOTOOLS_VERSION (built against numpy 2)"
if ! ( have xtcocotools "$XTCOCOTOOLS_VERSION" && "$VENV/bin/python" -c "import xtcocotools.coco" 2>/dev/null ); then
  "${PIP[@]}" install -q --no-binary xtcocotools --no-build-isolation "xtcocotools==$XTCOCOTOOLS_VERSION"
fi

say "[7/9] h5py, gsplat $GSPLAT_VERSION (optional CUDA backend), test and lint tools"
"${PIP[@]}" install -q h5py "gsplat==$GSPLAT_VERSION" packaging pytest ruff "$SETUPTOOLS_SPEC"

say "[8/9] gst_mm (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
# Keep setuptools inside its window whatever the steps above pulled in.
"${PIP[@]}" install -q "$SETUPTOOLS_SPEC"

say "[9/9] compiled CPU renderer (gst_mm/splatting/csrc/sum_splat.cpp; about 30 s the first time)"
build_renderer

say "checking imports (gst_mm, mmpose, mmcv.ops)"
check_imports
fingerprint > "$STAMP"
say "done in $(( $(date +%s) - start )) s"
