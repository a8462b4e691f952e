"""Datasets (embedded digits, MNIST/Fashion-MNIST IDX files) and metasurface targets."""
