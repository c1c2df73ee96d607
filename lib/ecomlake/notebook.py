"""What every Databricks notebook of notebooks/ sets up, in one place: the config (conf/databricks.yaml,
lake and raw roots from the notebook's widgets) and the pseudonymisation key from a secret scope
(into the environment variable the config names; never shown, never a widget value), and the
jobs' log lines in the cell output (job `notebook`, level from the config's logging.level)."""
from __future__ import annotations

import os

from ecomlake import config as cfg
from ecomlake import logs


def notebook_config(dbutils, env: str = "databricks") -> dict:
    """The config for a notebook with the widgets `lake_root`, `raw_root` and `secret_scope`."""
    config = cfg.load(env, overrides=[f"generate.output={dbutils.widgets.get('raw_root')}"],
                      lake=dbutils.widgets.get("lake_root"))
    logs.configure("notebook", config["logging"]["level"])
    scope = dbutils.widgets.get("secret_scope")
    os.environ[config["pseudonymisation"]["key_env_var"]] = dbutils.secrets.get(scope, "pseudonym_key")
    return config
