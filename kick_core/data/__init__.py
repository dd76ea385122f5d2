"""Data kick reads besides the task datasets: calibration windows for the compressors.

The ``judge/`` folder beside this module holds packaged judge prompts and reference files;
``summarisation/llm_kick_questions.jsonl.gz`` the study's 90 summarisation prompts as shipped and
``instruction/`` the Vicuna-80 questions with the study's GPT-3.5 reference answers (all from
``VITA-Group/llm-kick``, gzipped where large).
"""

from kick_core.data.calibration import CalibrationSet, calibration_batches, from_ids, hash_ids

__all__ = ["CalibrationSet", "calibration_batches", "from_ids", "hash_ids"]
