"""Compatibility only: benchmarks/rollout_speed.py still imports `load_model` from here.

Loading a model lives in bgnn_sim.models.loading, `bgnn rollout` in bgnn_sim.app.rollout. This
module is the one upward import that tests/test_layers.py allows; delete it (and that exception)
once the benchmark imports `from bgnn_sim.models.loading import load_model`.
"""

from bgnn_sim.models.loading import TrainedModel as TrainedModel
from bgnn_sim.models.loading import load_model as load_model
