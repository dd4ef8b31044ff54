#!/usr/bin/env bash
# Sets up everything, then shows distillation working, offline, on real data
# (Fashion-MNIST, from Debian's dataset-fashion-mnist): the shipped teacher
# (teachers/fashion_mnist, a ResNet32-shaped network trained on all 60,000
# training images; teachers/README.md trains it again with one command) and
# ResNet8-shaped students that keep the labels of only 10 images per class:
# the student alone, and distilled by Soft_logits, MHGD and KD-SVD, which also
# see the other training images without their labels. Ends with the table
# (test accuracy, gain over the student of the same seed, beside the
# benchmark's 5-seed numbers) and the plot runs/quickstart/low_data.png. Two
# runs train at once, each on one core (--jobs=2), the longest first, their
# output in runs/quickstart/labels10/<method>.log.
# Flags go to benchmarks/low_data.py (e.g. --seeds=3, --budgets=10,50,100);
# the protocol: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== Installing what tf-kd needs (scripts/install.sh)"
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
echo "== Students alone and distilled from teachers/fashion_mnist -> runs/quickstart"
python3 benchmarks/low_data.py --methods=KD-SVD,MHGD,Soft_logits --budgets=10 --seeds=1 \
  --jobs=2 --root=runs/quickstart --out=runs/quickstart \
  --reference=benchmarks/results/low_data/results.json "$@"
times_file=$(mktemp)
times > "$times_file"   # the shell's CPU time, then its children's (the runs)
read -r user system < <(tail -1 "$times_file")
rm -f "$times_file"
echo "== Done in $((SECONDS / 60)) min $((SECONDS % 60)) s wall time; CPU time of the runs: user $user, system $system"
