"""tf-kd: knowledge distillation for TensorFlow 2 / Keras, ported from the TF1
benchmark `KD_methods_with_TF` (Lee & Song, BMVC 2019; Lee et al., ECCV 2018)."""

__version__ = "0.1.0"
