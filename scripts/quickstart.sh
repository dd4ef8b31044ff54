#!/usr/bin/env bash
# Sets up everything, then runs the default job offline on real data
# (Fashion-MNIST): trains a small teacher, an undistilled student and an MHGD
# student with the same schedule, and prints the two students' accuracies.
# Extra flags are passed to every train.py call (e.g. --train_epoch=10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
RUN=runs/quickstart
COMMON=(--dataset=fashion_mnist --width=0.5 --train_subset=10000 --train_epoch=4
        --verbose=2 --overwrite "$@")
python3 train.py "${COMMON[@]}" --main_scope=Teacher --train_dir=$RUN/teacher
python3 train.py "${COMMON[@]}" --Distillation=None --train_dir=$RUN/student
python3 train.py "${COMMON[@]}" --Distillation=MHGD --init_epoch=1 --teacher=$RUN/teacher/model.keras \
  --train_dir=$RUN/mhgd
python3 scripts/summary.py $RUN/teacher $RUN/student $RUN/mhgd
