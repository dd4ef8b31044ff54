"""The two benchmark scripts on tiny configurations (they are scripts, not
timed tests: only that they run and write complete reports is checked)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_step_time_on_a_tiny_configuration(tmp_path):
    out = tmp_path / "step_time.md"
    run("step_time.py", "--methods=Soft_logits,DML,FitNet", "--batch_size=4", "--width=0.125",
        "--steps=2", "--warmup=1", "--breakdown=KD-EID", f"--out={out}")
    report = out.read_text()
    for line in ("- tensorflow:", "- cores:", "- intra_op_threads:", "- cpu:"):
        assert line in report
    rows = re.findall(r"^\| (\S+) \| (init|main) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (yes|no) \|$",
                      report, re.M)
    assert [(r[0], r[1]) for r in rows] == [("Soft_logits", "main"), ("DML", "main"),
                                            ("FitNet", "init"), ("FitNet", "main")]
    for _, _, step, floor, ratio, within in rows:
        assert float(step) > 0 and float(floor) > 0
        assert abs(float(ratio) - float(step) / float(floor)) < 0.02
        assert (within == "yes") == (float(ratio) <= 1.10)
    svd_rows = re.findall(r"^\| 4x\d+x\d+x\d+( \| [\d.]+){4} \|$", report, re.M)
    assert len(svd_rows) == 3
    assert re.search(r"^\| KD-EID \| [\d.]+( \| [\d.]+){3} \|$", report, re.M)


def test_fashion_mnist_benchmark_on_a_tiny_configuration(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "report"
    args = ["--methods=None,Soft_logits", "--trials=1", "--train_epoch=1", "--teacher_epoch=1",
            "--width=0.125", "--train_subset=128", "--test_subset=100", "--batch_size=64",
            f"--root={root}", f"--out={out}"]
    run("fashion_mnist.py", *args)
    for method in ("Teacher", "None", "Soft_logits"):
        assert (root / method / "trial0" / "train_params.mat").exists()
    report = (out / "README.md").read_text()
    assert "- tensorflow:" in report and "- cpu:" in report and "wall time" in report
    assert re.search(r"^\| Soft_logits \| 1 \| [\d.]+ \|", report, re.M)
    assert "Beat the undistilled student" in report and "Did not:" in report
    assert (out / "curves.png").stat().st_size > 0


def test_conv_flops_counts_a_convolution_and_both_its_backward_kernels():
    import tensorflow as tf
    sys.path.insert(0, ROOT)
    from benchmarks.default_job import conv_flops

    kernel = tf.Variable(tf.random.normal((3, 3, 3, 4)))
    weights = tf.Variable(tf.random.normal((8 * 8 * 4, 5)))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            features = tf.nn.conv2d(x, kernel, 1, "SAME")
            logits = tf.linalg.matmul(tf.reshape(features, (2, -1)), weights)
            loss = tf.reduce_sum(logits)
        return tape.gradient(loss, [x, kernel, weights])

    conv_macs = 2 * 8 * 8 * (3 * 3 * 3) * 4          # batch x positions x kernel x out
    matmul_macs = 2 * (8 * 8 * 4) * 5
    # forward, input gradient and kernel gradient of each, two operations a MAC
    expected = 3 * 2 * (conv_macs + matmul_macs)
    assert conv_flops(step, tf.zeros((2, 8, 8, 3))) == expected


def test_rate_mode_on_a_tiny_configuration(tmp_path):
    out = tmp_path / "rate.md"
    run("default_job.py", "--rate", "--widths=0.125", "--steps=2", "--matrix_size=64",
        f"--out={out}")
    report = out.read_text()
    assert "- cpu:" in report and "- tensorflow:" in report
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| (\d+)% \|$", report, re.M)
    assert [r[0] for r in rows] == ["64x64 float32 matrix product", "teacher step, width 0.125"]
    assert rows[0][4] == "100"
    assert abs(float(rows[0][1]) / (2 * 64 ** 3 / 1e9) - 1) < 1e-2
    assert float(rows[1][1]) > 0 and float(rows[1][2]) > 0
