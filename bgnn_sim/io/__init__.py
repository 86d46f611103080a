"""Trajectory formats: LIGGGHTS dumps in, the HDF5 store, ParaView series out."""
