"""DEM data from the real LIGGGHTS: scenario families, input decks, the runner."""
