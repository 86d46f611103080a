"""The application layer: the commands' workflows that combine stages (simulate, rollout, train,
analyze and compare), above every stage package. The CLI calls these; no stage imports them.

The stage packages form one order, each importing only those before it (and itself):

    base       bgnn_sim (version), errors, configfile, physics, defaults (scenario constants),
               device
    geometry   meshes, walls and their motion, closest points, filling  } one level: a mesh is
    io         LIGGGHTS dumps, the HDF5 trajectory store, VTK, outputs  } saved through io, a
    trajectory the Trajectory type                                      } trajectory holds walls
    dem        LIGGGHTS scenarios, decks, runner, datasets (`bgnn generate` stays here: it
               combines nothing above dem)
    graph      neighbour search, wall nodes, features
    engine     the rollout loop, its state, the wall guard (a backend is a protocol; the engine
               never knows a model)
    models     the BGNN and LaM-SLidE backends, the shipped models, and loading a checkpoint
               for inference (models.loading; no training code)
    analysis   flow, mixing, distances, leakage, comparison and reports
    training   datasets of windows, noise, the trainers, training checkpoints
    app        this package

Training imports the models, never the reverse. tests/test_layers.py checks the order.
"""
