"""Models: features, training, prediction, the prior and the training domain, baselines, evaluation."""
