"""Where the project's own resources are: `conf/` and `schemas/` beside the `jobs` package."""
import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("CRM_HOME", Path(__file__).resolve().parents[2]))
CONF_DIR = PROJECT_ROOT / "conf"
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
