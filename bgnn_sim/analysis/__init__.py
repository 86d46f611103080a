"""What users measure on a trajectory (LIGGGHTS, rollout or dataset run), and comparisons.

flow: hopper discharge and flow rate, drum velocity profile and angle of repose.
mixing: mixing entropy and the Lacey index of two particle types.
distances: earth mover's / Sinkhorn distances, per-particle and kinetic-energy errors.
leakage: particles that crossed a wall or ended outside a closed container.
"""
