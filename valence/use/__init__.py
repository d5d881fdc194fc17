"""predict, explain, serve: a trained model file (Keras or LiteRT) scoring and explaining new photos."""
