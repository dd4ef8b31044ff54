"""The code blocks of README.md and docs/training.md run as written.

Every block is taken from the documents themselves, never edited:

- `python train.py ...` lines run with tiny sizes appended as extra flags
  (`TINY`: the last occurrence of an absl flag wins), `python test.py ...`
  lines with `--test_subset=100`, each in a temporary working directory, so
  that the documents' relative paths (`runs/Teacher`, `runs/student`, ...)
  land there. A line must exit 0 and print what the README says it prints;
  a `test.py` line must print the accuracy its run's record holds.
- Python blocks run as they are, in a subprocess, in the same directory,
  with the checkout importable, after the runs they read exist.

A line that reads a run waits for the line that writes it; lines that do not
depend on each other run side by side. The same line in both documents runs
once. Skipped, and why (`skip_reason`): the set-up scripts (they install
packages; `quickstart.sh` trains for minutes, `run_tests.sh` runs this very
suite), `pip install`, multi-worker lines (they need the machines their
`TF_CONFIG` names), lines that need TF1's `pre_trained/ResNet.mat`,
which is not part of the project, and lines of RepDistiller's networks
(they refuse the tiny `--width`; `tests/test_zoo.py` trains them).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import concurrent.futures

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ("README.md", os.path.join("docs", "training.md"))
TINY = ["--dataset=synthetic", "--train_epoch=1", "--width=0.125", "--train_subset=128",
        "--test_subset=100", "--batch_size=32", "--verbose=0"]
TEST_TINY = ["--test_subset=100"]
# what TensorFlow prints unasked (start-up banners, C++ and Python INFO lines): train.py and
# test.py leave it out without being asked (the documents' lines run without
# TF_CPP_MIN_LOG_LEVEL, as a user types them)
NOISE = ("oneDNN custom operations", "absl::InitializeLog", "I0000", "INFO:")
FINAL = re.compile(r"Final validation accuracy: (\d+\.\d\d)% \(best (\d+\.\d\d)%\)")
TOP1 = re.compile(r"Top-1 accuracy: (\d+\.\d\d)%")
TIMEOUT = 300


def code_blocks(path):
    """`[(language, text)]` of the fenced blocks of `path`."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def shell_lines(text):
    """The commands of a shell block, continuations joined, comments dropped."""
    text = text.replace("\\\n", " ")
    return [words for words in (shlex.split(line, comments=True) for line in text.splitlines())
            if words]


def skip_reason(words):
    line = " ".join(words)
    if words[:2] == ["bash", "scripts/quickstart.sh"]:
        return "the default job: installs packages and trains for minutes"
    if words[:2] == ["bash", "scripts/run_tests.sh"]:
        return "installs packages and runs this test suite"
    if "pip" in words[:3] and "install" in words:
        return "installs packages"
    if words[0].startswith("TF_CONFIG="):
        return "needs the machines TF_CONFIG names (tests/test_distribute.py runs two workers)"
    if "pre_trained/" in line:
        return "needs TF1's pre_trained/ResNet.mat, not part of the project"
    if words[0] != "python" or words[1] not in ("train.py", "test.py"):
        return "not a train.py / test.py line"
    if flag(words, "model_name", "ResNet") not in ("ResNet", "FCN"):
        return ("a RepDistiller network, which trains at its published width only "
                "(tests/test_zoo.py trains these pairs and one through --teacher_model_name)")
    return None


def flag(words, name, default=None):
    """The value of `--name=value` in `words` (the last one wins, as in absl)."""
    values = [w.split("=", 1)[1] for w in words if w.startswith(f"--{name}=")]
    return values[-1] if values else default


def train_dir(words):
    """Where a train.py line writes (its `--train_dir` or the default)."""
    scope = flag(words, "main_scope", "Student")
    return flag(words, "train_dir") or (
        "runs/Teacher" if scope == "Teacher" else f"runs/{flag(words, 'Distillation', 'None')}")


class Job:
    def __init__(self, kind, text, words=None):
        self.kind, self.text, self.words = kind, text, words
        self.writes = train_dir(words) if kind == "train" else None
        self.after = []

    def command(self):
        if self.kind == "python":
            return [sys.executable, "-c", self.text]
        extra = TINY if self.kind == "train" else TEST_TINY
        return [sys.executable, os.path.join(ROOT, self.words[1]), *self.words[2:], *extra]


def reads(text, directory):
    return re.search(rf"(?<![\w/]){re.escape(directory)}(?![\w.])", text) is not None


def collect():
    """`(jobs, skipped)` of both documents, each line once, in order."""
    jobs, skipped, seen = [], [], set()
    for document in DOCUMENTS:
        for language, text in code_blocks(document):
            if language == "python":
                jobs.append(Job("python", text))
            elif language == "bash":
                for words in shell_lines(text):
                    reason = skip_reason(words)
                    if reason:
                        skipped.append((document, " ".join(words), reason))
                    elif tuple(words) not in seen:
                        seen.add(tuple(words))
                        jobs.append(Job("train" if words[1] == "train.py" else "test",
                                        " ".join(words), words))
    for i, job in enumerate(jobs):   # a job waits for the earlier runs it names
        job.after = [other for other in jobs[:i]
                     if other.writes and reads(job.text, other.writes)]
    return jobs, skipped


def run_all(jobs, cwd):
    """Run `jobs` in dependency order, independent ones side by side;
    returns `{job: CompletedProcess}`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    done, pending = {}, list(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        while pending:
            ready = [j for j in pending if all(a in done for a in j.after)]
            assert ready, "circular dependencies between the documents' commands"
            futures = {pool.submit(subprocess.run, j.command(), cwd=cwd, env=env,
                                   capture_output=True, text=True, timeout=TIMEOUT): j
                       for j in ready}
            for future, job in futures.items():
                done[job] = future.result()
                pending.remove(job)
    return done


def test_documented_outputs_match_the_programs():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "Final validation accuracy: X% (best Y%)" in readme
    assert "Top-1 accuracy: X%" in readme


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    jobs, skipped = collect()
    for document, line, reason in skipped:
        print(f"skipped ({document}): {line}  -- {reason}")
    cwd = tmp_path_factory.mktemp("readme")
    return jobs, skipped, run_all(jobs, str(cwd)), cwd


def test_what_runs_and_what_is_skipped(ran):
    jobs, skipped, _, _ = ran
    kinds = [j.kind for j in jobs]
    # README: a teacher, a student, an MHGD student, test.py and the Python
    # block; docs/training.md adds test.py on the other artefacts and its block.
    assert kinds.count("train") >= 3 and kinds.count("test") >= 3 and kinds.count("python") >= 2
    assert {line for _, line, _ in skipped} >= {"bash scripts/quickstart.sh",
                                                 "bash scripts/run_tests.sh"}
    # test.py reads a run directory, its SavedModel and its train_params.mat (and
    # tests/test_training.py its model.keras)
    models = [flag(j.words, "model") for j in jobs if j.kind == "test"]
    assert "runs/student" in models, models
    assert {"saved_model", "train_params.mat"} <= {os.path.basename(m) for m in models}, models


def test_every_block_runs_and_prints_what_the_documents_say(ran):
    jobs, _, results, cwd = ran
    for job in jobs:
        result = results[job]
        where = f"{job.kind}: {job.text[:200]}\n--- stdout\n{result.stdout[-2000:]}" \
                f"\n--- stderr\n{result.stderr[-3000:]}"
        assert result.returncode == 0, where
        if job.kind in ("train", "test"):
            assert not [n for n in NOISE if n in result.stderr], where
        if job.kind == "train":
            assert FINAL.search(result.stdout), where
            with open(os.path.join(cwd, job.writes, "run.json"), encoding="utf-8") as f:
                record = json.load(f)
            assert record["state"] == "finished", where
            assert f"{float(FINAL.search(result.stdout)[1]):.2f}" == \
                f"{record['metrics']['last_accuracy']:.2f}", where
        elif job.kind == "test":
            found = TOP1.search(result.stdout)
            assert found, where
            model = flag(job.words, "model")
            directory = model if os.path.exists(os.path.join(cwd, model, "run.json")) \
                else os.path.dirname(model.rstrip("/"))
            with open(os.path.join(cwd, directory, "run.json"), encoding="utf-8") as f:
                record = json.load(f)
            # test.py reproduces the run's last validation accuracy
            assert found[1] == f"{record['metrics']['last_accuracy']:.2f}", where
        else:
            assert "finished" in result.stdout, where
