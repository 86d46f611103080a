"""The scenarios' constants, shared by the LIGGGHTS runs (dem) and the learned simulations
(`bgnn simulate`): one place to change them."""

from __future__ import annotations

# m below a hopper's outlet where particles leave the simulation (the training runs' sink).
SINK_DEPTH = 0.03
# A drum turns this fast unless told (training range 10-40 rpm), for this long by default.
DEFAULT_RPM = 30.0
DEFAULT_DRUM_SECONDS = 1.0
# A drum is filled to this fraction of its volume unless told (training range 0.20-0.45).
DEFAULT_DRUM_FILL = 0.25
# A hopper is filled to this fraction of its height above the outlet unless told.
DEFAULT_HOPPER_FILL = 0.5
# A hopper discharges until it is empty or for this long after the gate opens.
DEFAULT_HOPPER_SECONDS = 1.5
# The precisions a BGNN's processor runs in (BGNNSimulator.use_precision).
PRECISIONS = ("float32", "bfloat16")
