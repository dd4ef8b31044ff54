"""The TF1 repository's results: CIFAR-100, ResNet32 teacher -> ResNet8
student, 100 epochs (+ init epochs), mean of five trials, last and best
validation accuracy in % (README of sseung0703/KD_methods_with_TF)."""

TF1_RESULTS = {
    # key: (last, best)
    "None": (71.76, 71.92),          # the student trained alone
    "Teacher": (78.96, 79.08),
    "Soft_logits": (71.79, 72.08),
    "FitNet": (72.74, 72.96),
    "AT": (72.31, 72.60),
    "FSP": (72.65, 72.91),
    "DML": (73.27, 73.47),
    "KD-SVD": (73.68, 73.78),
    "KD-EID": (73.84, 74.07),
    "FT": (73.35, 73.50),
    "AB": (73.08, 73.41),
    "RKD": (73.40, 73.48),
    "MHGD": (73.98, 74.30),
}
