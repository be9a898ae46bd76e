"""Hydra launcher plugin of limo-exp: ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml)."""
