"""Fixtures of the MMPose tests: the 5-image MPII sample with a headbox file."""

import pytest

pytest.importorskip('mmpose')
