"""Data kick reads besides the task datasets: calibration windows for the compressors.

The ``judge/`` folder beside this module holds packaged judge prompts and reference files.
"""

from kick_core.data.calibration import CalibrationSet, calibration_batches, from_ids, hash_ids

__all__ = ["CalibrationSet", "calibration_batches", "from_ids", "hash_ids"]
