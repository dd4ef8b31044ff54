"""Print the last and best validation accuracy of finished train_dirs."""

import os
import sys

import numpy as np
import scipy.io as sio


def main(train_dirs):
    print(f"{'run':<28}{'last':>8}{'best':>8}")
    for train_dir in train_dirs:
        log = sio.loadmat(os.path.join(train_dir, "log.mat"))
        accuracy = np.ravel(log["validation_acc"])
        print(f"{train_dir:<28}{accuracy[-1]:>8.2f}{accuracy.max():>8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
