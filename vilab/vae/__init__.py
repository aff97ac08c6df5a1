"""``vilab vae``: the Bernoulli VAE on MNIST: trainer, evaluation, the plain reference loop."""
