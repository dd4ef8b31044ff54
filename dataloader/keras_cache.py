"""Where `keras.datasets` keeps what it downloads."""

import os


def datasets_dir():
    """`$KERAS_HOME/datasets`, by default `~/.keras/datasets` (read at call
    time, unlike Keras, which reads `KERAS_HOME` once at import)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")
