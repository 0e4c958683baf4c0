"""Runnable examples of ignite-pseudolabel. Run them as modules from the repository root, e.g.
``python -m examples.mnist_pseudo_label``; :mod:`examples.mnist` holds what they share with the
benchmarks and tests (the tutorial's model and the MNIST-family data)."""
