"""The task registry: task name (the ``task`` config key) -> task object.

Each task object is a :class:`~kick_core.tasks.base.Task`: ``name``, ``version``, ``METRICS``
(metric -> higher_is_better), ``primary_metric(task_cfg)``, ``load(task_cfg, seed, world_seed=...)``,
``prompts(...)``, ``followups(...)``, ``score(...)``, ``judge_task``, ``judge_inputs(...)``,
``rubric(...)`` and ``aggregate(...)``. The judged tasks (summarisation, instruction) set
``judge_task`` and override ``judge_inputs`` and ``rubric`` (the judge step in ``evaluate``,
:mod:`kick_core.judge.records`); instruction overrides ``followups`` (turn 2). The rest keep
:class:`~kick_core.tasks.base.TaskBase`'s defaults (one round, no judge).
"""

from __future__ import annotations

from kick_core.errors import lookup
from kick_core.tasks import factoid_qa, icr_qa, instruction, mcq, perplexity, summarisation
from kick_core.tasks.base import Example, Prompt, Task

TASKS: dict[str, Task] = {
    "factoid_qa": factoid_qa.TASK,
    "mcq": mcq.TASK,
    "icr_qa": icr_qa.TASK,
    "summarisation": summarisation.TASK,
    "instruction": instruction.TASK,
    "perplexity": perplexity.TASK,
}


def get_task(name: str) -> Task:
    """``TASKS[name]`` with a did-you-mean error for unknown names."""
    return lookup(TASKS, name, "task")


__all__ = ["TASKS", "Example", "Prompt", "Task", "get_task"]
