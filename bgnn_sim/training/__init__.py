"""Training: windows of frames from datasets, input noise, the trainer, checkpoints, DDP."""
