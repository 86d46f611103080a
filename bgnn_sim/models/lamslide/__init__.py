"""LaM-SLidE (Sestak et al.): a latent generative model whose identifier vectors keep every
particle traceable. ids.py: the identifier scheme; autoencoder.py: particles <-> latent tokens;
dynamics.py: the flow-matching transformer over windows of latent frames."""
