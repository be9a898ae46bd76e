"""``limo-exp curate [overrides]``: the Hydra entry point around ``run_curate``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from limo_exp import CONF_DIR
from limo_exp.curation.run import run_curate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run_curate(cfg)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
