import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("key", ["KD-SVD", "Soft_logits"])
def test_two_steps_under_mirrored_strategy(key):
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "distribute_check.py"), key],
        capture_output=True, text=True, cwd=os.path.dirname(HERE),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONPATH": os.path.dirname(HERE)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"OK {key}" in result.stdout
