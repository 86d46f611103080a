"""Container geometry: meshes, walls and their motion, parametric generators, proximity."""
