"""mnistgen: train, sample, evaluate and compare generative models of MNIST-like digits."""

__version__ = "0.1.0"
