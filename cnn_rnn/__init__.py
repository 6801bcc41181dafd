"""cnn_rnn: convolutional versus recurrent networks in JAX/Flax."""

__version__ = "0.1.0"
