"""Train a network, with or without distillation (TF1 `train_w_distill.py`);
`python train.py --help` lists the flags (see `tf_kd/cli/train.py`).

    python train.py --Distillation=None --dataset=fashion_mnist --train_dir=runs/student
"""

from tf_kd.cli.train import run

if __name__ == "__main__":
    run()
