"""Optical models: pure forward functions (``functional``) and thin learnable wrappers."""
