"""A scratch behave tree for tests that run behave itself: features/<name>.feature, steps/s.py, and an
optional environment.py."""
from __future__ import annotations

from pathlib import Path


def write_features(root: Path, steps: str, features: dict[str, str], environment: str | None = None) -> Path:
    """root/features with each {name: text} as <name>.feature, the steps module and the hooks; returns it."""
    feats = Path(root) / "features"
    (feats / "steps").mkdir(parents=True)
    for name, text in features.items():
        (feats / f"{name}.feature").write_text(text)
    (feats / "steps" / "s.py").write_text(steps)
    if environment is not None:
        (feats / "environment.py").write_text(environment)
    return feats
