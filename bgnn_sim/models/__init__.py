"""Learned backends: the Boundary Graph Neural Network (and, later, LaM-SLidE)."""
