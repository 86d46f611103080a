"""Graph construction for the BGNN: neighbour search, wall (virtual) nodes, features."""
