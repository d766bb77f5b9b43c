"""gst_mm: Gaussian Spatial Transport for MMEngine / MMPose."""
import os.path as osp

from setuptools import find_packages, setup


def get_version() -> str:
    ns: dict = {}
    with open(osp.join(osp.dirname(__file__), 'gst_mm', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


setup(
    name='gst_mm',
    version=get_version(),
    description='Gaussian Spatial Transport (GST) losses, kernels and 2D Gaussian '
    'splatting precompute for MMEngine and MMPose',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tools', 'configs')),
    python_requires='>=3.9',
    # The heavy OpenMMLab stack is installed by tools/setup_env.sh (mmcv must be
    # built from source against the installed torch; mmpose's declared chumpy
    # does not build). These are the requirements pip can satisfy as-is.
    install_requires=[
        'numpy',
        'scipy',
        'h5py',
        'tqdm',
        'opencv-python',
        'torch>=2.0',
        'mmengine>=0.10.0',
    ],
    extras_require={
        'mmpose': ['mmcv>=2.0.0,<2.2.0', 'mmpose>=1.3.0', 'mmdet>=3.0.0'],
        'gsplat': ['gsplat==1.5.3', 'packaging'],
        'tests': ['pytest', 'ruff'],
    },
    zip_safe=False,
)
