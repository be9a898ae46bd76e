"""Opening an MLflow store safely, and the dataset sources runs record: the two places besides
``tracker.py`` that import mlflow (lazily, inside the functions)."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from limo_exp.tracking.names import mask


@contextmanager
def store_lock(uri: str):
    """An exclusive file lock beside a SQLite store while it is opened (and, the first time,
    created): MLflow's schema set-up is not safe when several processes do it at once."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


def open_checked(call, uri: str):
    """The first call that touches the store, with a message for a store that cannot be used."""
    try:
        return call()
    except Exception as e:
        import sqlalchemy.exc
        from mlflow.exceptions import MlflowException

        if not isinstance(e, MlflowException | sqlalchemy.exc.SQLAlchemyError):
            raise
        where = mask(uri)
        if uri.startswith("sqlite:///"):
            db = uri[len("sqlite:///") :]
            raise SystemExit(
                f"the MLflow store {db} cannot be opened: {str(e).splitlines()[0][:300]}\n"
                "It was most likely left half set up by an interrupted or concurrent schema creation or "
                f"upgrade. Recover: keep a copy (cp {db} {db}.bak), then either run `mlflow db upgrade "
                f"sqlite:///{db}` or, for a store you can lose, move it away (mv {db} {db}.broken) and rerun."
            ) from None
        raise SystemExit(
            f"the MLflow tracking server at {where} cannot be used: {str(e).splitlines()[0][:300]}"
        ) from None


def dataset_source(origin: dict | None):
    """A pool's origin as an MLflow dataset source (None: MLflow's own placeholder)."""
    if not origin:
        return None
    if origin["kind"] == "hub":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(
            path=origin["hub_id"],
            config_name=origin["config"],
            split=origin["split"],
            revision=origin["revision"],
        )
    if origin["kind"] == "file":
        return origin["path"]
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return CodeDatasetSource({k: str(v) for k, v in origin.items()})
