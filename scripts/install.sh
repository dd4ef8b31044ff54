#!/usr/bin/env bash
# Installs what tf-kd needs: TensorFlow (GPU build if an NVIDIA driver is
# present), the Python packages of requirements.txt and, on Debian/Ubuntu,
# the Fashion-MNIST files (package dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore
PIP="python3 -m pip install --quiet --disable-pip-version-check"
if ! python3 -c "import tensorflow, sys; sys.exit(tuple(map(int, tensorflow.__version__.split('.')[:2])) < (2, 16))" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then $PIP "tensorflow[and-cuda]>=2.16"; else $PIP "tensorflow-cpu>=2.16"; fi
fi
$PIP -r requirements.txt
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
