"""Evaluate a trained network on a dataset's test split; `python test.py
--help` lists the flags (see `tf_kd/cli/evaluate.py`).

    python test.py --model=runs/student
"""

from tf_kd.cli.evaluate import run

if __name__ == "__main__":
    run()
