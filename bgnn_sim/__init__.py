"""bgnn-sim: a learned simulator for granular flow in hoppers and drums."""

__version__ = "0.1.0"
