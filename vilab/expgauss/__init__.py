"""``vilab expgauss``: SVI paths on the closed-form ELBO of the exponential-Gaussian model."""
