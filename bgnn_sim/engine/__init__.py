"""The rollout engine shared by every backend: state, integrator, sinks, streamed output."""
