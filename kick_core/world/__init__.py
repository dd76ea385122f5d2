"""The embedded default: a synthetic knowledge world and a small Llama trained on it on the CPU.

``ensure_world(seed)`` builds (once per machine) the world's task files in the real datasets'
formats and a trained model directory; ``ensure_world_data(seed)`` builds only the files.
"""

from kick_core.world.cache import WorldPaths, ensure_world, ensure_world_data
from kick_core.world.rubric import rubric_score
from kick_core.world.train import TrainConfig

__all__ = ["TrainConfig", "WorldPaths", "ensure_world", "ensure_world_data", "rubric_score"]
