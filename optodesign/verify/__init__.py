"""Verify: rebuild what gets made from the written files alone, perturb it, and score it."""
