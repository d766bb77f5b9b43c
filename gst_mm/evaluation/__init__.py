"""Evaluation: the crowd-counting metric and its prediction files."""
from .metrics import *  # noqa: F401,F403
from .prediction_files import (  # noqa: F401
    nwpu_image_id,
    read_nwpu_submission,
    read_predictions,
    write_nwpu_submission,
    write_predictions,
)
