"""Print the last and best validation accuracy of train_dirs, from their run
records; a run that is not finished is shown as such, without numbers."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_kd import run_record  # noqa: E402


def main(train_dirs):
    print(f"{'run':<28}{'last':>8}{'best':>8}")
    for train_dir in train_dirs:
        record = run_record.read(train_dir)
        if record is None or record["state"] != run_record.FINISHED:
            state = "no run record" if record is None else run_record.describe(record)
            print(f"{train_dir:<28}  {state}")
            continue
        metrics = record["metrics"]
        print(f"{train_dir:<28}{metrics['last_accuracy']:>8.2f}{metrics['best_accuracy']:>8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
