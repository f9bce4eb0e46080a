"""Generator training recipes as YAML (``trainer/configs/<name>.yaml``), with flags and ``key=value`` on top.

``python -m trainer generator --config denoising --data DIR epochs=5 noise=mask:0.25``: the named recipe (or a
YAML file's path), then any flag given on the command line, then each ``key=value`` (its value read as YAML), in
that order; an unknown key is refused with the valid ones. The resolved settings go into the checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from edge.base.errors import UserError
from edge.base.registry import unknown_name_message

CONFIG_DIR = Path(__file__).resolve().parent
# setting -> its type (str settings may be null: no noise)
TYPES = {"family": str, "latent": int, "epochs": int, "batch_size": int, "lr": float, "noise": str,
         "sparsity": float, "ssim_weight": float, "beta": float, "dedup_distance": int, "patience": int,
         "width": int, "condition": str, "channels": list, "colour": str, "stacked_epochs": int}
KEYS = tuple(TYPES)
# settings only some families read, and their values when a recipe leaves them out
OPTIONAL = {"width": 64, "condition": None, "channels": [16, 32, 64], "colour": "rgb", "stacked_epochs": 0}


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve(config: str, flags: dict, overrides: list[str]) -> tuple[str, dict]:
    """(the recipe's name, the settings) from the recipe, then the flags given (None: not given), then overrides."""
    path = Path(config)
    if path.suffix not in (".yaml", ".yml"):
        if config not in config_names():
            raise UserError(unknown_name_message("generator config", config, config_names()))
        path = CONFIG_DIR / f"{config}.yaml"
    try:
        settings = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"generator config {path} cannot be read: {err}") from err
    check_keys(settings, f"config {path}")
    settings.update({key: value for key, value in flags.items() if value is not None})
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"override {item!r}: write KEY=VALUE, e.g. epochs=5")
        check_keys({key: None}, "override")
        settings[key] = yaml.safe_load(text)
    settings = {**OPTIONAL, **settings}
    missing = [key for key in KEYS if key not in settings]
    if missing:
        raise UserError(f"config {path} does not set {', '.join(missing)}")
    return path.stem, {key: typed(key, value) for key, value in settings.items()}


def typed(key: str, value):
    """The value as its setting's type: whole numbers for counts, numbers for weights; refused otherwise."""
    kind = TYPES[key]
    if value is None and kind is str:
        return None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is list:
        if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                     for v in value):
            return value
        raise UserError(f"setting {key} must be a list of positive whole numbers such as [16, 32, 64], got {value!r}")
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    wanted = {int: "a whole number", float: "a number", str: "text"}[kind]
    raise UserError(f"setting {key} must be {wanted}, got {value!r}")


def check_keys(settings: dict, where: str) -> None:
    for key in settings:
        if key not in KEYS:
            raise UserError(f"{where}: {unknown_name_message('setting', key, list(KEYS))}")
