"""The shared core: maths, pattern encoding, scoring, the training loop, models and devices. No artifacts."""
