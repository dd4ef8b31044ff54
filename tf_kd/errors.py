"""The errors a run reports to its user without a traceback.

`UserError`: bad input (a flag, a file, the data, the teacher); its message
names the flag or the file and says how to fix it. `Diverged`: a loss or a
weight became non-finite, so the run stopped. `WorkerLost`: a worker of a
multi-worker run stopped answering. Anything else is a bug and keeps its
traceback.
"""


class UserError(ValueError):
    """Bad input, named with its fix."""


class MissingData(UserError, FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class Diverged(RuntimeError):
    """A non-finite loss or weight stopped a run."""


class WorkerLost(RuntimeError):
    """A worker of a multi-worker run stopped answering (killed, its machine lost)."""
