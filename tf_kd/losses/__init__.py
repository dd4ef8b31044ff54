"""Distillation losses and the small trainable modules some of them need,
grouped as in the TF1 repository by kind of knowledge."""
