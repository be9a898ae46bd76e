"""limo-exp: reproducible "less is more" reasoning fine-tuning."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra config tree (repo/conf, reached through the package's `conf` link so that it is
# found whether the package is installed editable or not).
CONF_DIR = str((Path(__file__).resolve().parent / "conf").resolve())
