"""Data kick reads besides the task datasets: calibration windows for the compressors.

The ``judge/`` folder beside this module holds packaged judge prompts and reference files;
``summarisation/llm_kick_questions.jsonl.gz`` the study's 90 summarisation prompts as shipped and
``instruction/`` the Vicuna-80 questions with the study's GPT-3.5 reference answers (all from
``VITA-Group/llm-kick``, gzipped where large).

Real task data, read offline by name (:data:`kick_core.tasks.base.SHIPPED_DATASETS`):
``mmlu/{dev,val,test}/<subject>_<split>.csv`` is the full Hendrycks MMLU (57 subjects, 14,042 test
questions; MIT licence, see ``mmlu/README.txt``), ``dataset: mmlu`` for task mcq;
``cnn_dm/{small,mid,large}/<id>.story`` the study's 90 CNN/DailyMail stories (30 per bucket),
``dataset: cnn_dm`` for summarisation and perplexity. Calibration reads them as ``calib_dataset:
mmlu_val`` (the val split, which no task evaluates) and ``cnn_dm`` (:mod:`kick_core.data.calibration`).
"""

from kick_core.data.calibration import CalibrationSet, calibration_batches, from_ids, hash_ids

__all__ = ["CalibrationSet", "calibration_batches", "from_ids", "hash_ids"]
