"""The evaluation engine: one interface over any in-memory Hugging Face causal LM and its tokenizer.

* :func:`loglikelihood` -- multiple-choice scoring with shared-prefix KV reuse (``scoring.py``);
* :func:`generate` -- batched greedy/sampled generation with retirement of finished rows (``generation.py``);
* :func:`window_nll` with :func:`rolling_windows` / :func:`strided_windows` -- perplexity (``perplexity.py``).

The device always comes from the model (``models.model_device``), so the same calls work on CPU,
one GPU or a model spread by ``device_map="auto"``.
"""

from kick_core.engine.generation import Generation, Sampling, generate
from kick_core.engine.perplexity import (
    Window,
    rolling_perplexity,
    rolling_windows,
    strided_windows,
    token_perplexity,
    window_nll,
)
from kick_core.engine.scoring import ScoreRequest, ScoreResult, loglikelihood, loglikelihood_naive

__all__ = [
    "Generation",
    "Sampling",
    "ScoreRequest",
    "ScoreResult",
    "Window",
    "generate",
    "loglikelihood",
    "loglikelihood_naive",
    "rolling_perplexity",
    "rolling_windows",
    "strided_windows",
    "token_perplexity",
    "window_nll",
]
