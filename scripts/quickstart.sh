#!/usr/bin/env bash
# Sets up everything, then runs the default job offline on real data
# (Fashion-MNIST, from Debian's dataset-fashion-mnist): trains a small teacher
# (ResNet32 shape), then with the same schedule an undistilled student and an
# MHGD student (ResNet8 shape), and prints their accuracies.
# Extra flags go to every train.py call (e.g. --width=0.5 --train_subset=60000).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== Installing what tf-kd needs (scripts/install.sh)"
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
RUN=runs/quickstart
COMMON=(--dataset=fashion_mnist --width=0.25 --train_subset=10000 --overwrite)
# The teacher trains at learning rate 0.02: on this setting it ends 4 points
# higher than at TF1's 0.1 (docs/differences.md).
echo "== Stage 1 of 3: the teacher (ResNet32 shape, 8 epochs) -> $RUN/teacher"
python3 train.py "${COMMON[@]}" --main_scope=Teacher --train_epoch=8 --learning_rate=0.02 \
  --train_dir=$RUN/teacher "$@"
echo "== Stage 2 of 3: the student without distillation (ResNet8 shape, 5 epochs) -> $RUN/student"
python3 train.py "${COMMON[@]}" --train_epoch=5 --Distillation=None --train_dir=$RUN/student "$@"
echo "== Stage 3 of 3: the MHGD student (1 + 5 epochs) -> $RUN/mhgd"
python3 train.py "${COMMON[@]}" --train_epoch=5 --Distillation=MHGD --init_epoch=1 \
  --teacher=$RUN/teacher --train_dir=$RUN/mhgd "$@"
echo "== Results (validation accuracy, %, on the 10,000 test images)"
python3 scripts/summary.py $RUN/teacher $RUN/student $RUN/mhgd
times_file=$(mktemp)
times > "$times_file"   # the shell's CPU time, then its children's (the three runs)
read -r user system < <(tail -1 "$times_file")
rm -f "$times_file"
echo "== Done in $((SECONDS / 60)) min $((SECONDS % 60)) s wall time; CPU time of the runs: user $user, system $system"
