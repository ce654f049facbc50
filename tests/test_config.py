"""The configuration loader: defaults from conf/, a --conf file merged over them, CRM_* variables last."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from jobs.cli import main
from jobs.common.config import ConfigError, load_settings
from jobs.common.paths import CONF_DIR

NO_ENV: dict[str, str] = {}


def _conf(tmp_path: Path, text: str, name: str = "override.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_settings_when_defaults_only_gives_values_of_pipeline_yaml():
    documented = yaml.safe_load((CONF_DIR / "pipeline.yaml").read_text(encoding="utf-8"))

    settings = load_settings(env=NO_ENV)

    for section in ("lake", "landing", "outbox", "reports", "bank", "mlflow"):
        assert getattr(settings, section).model_dump() == documented[section]
    assert settings.spark.master == documented["spark"]["master"]
    assert settings.spark.conf == {k: str(v) for k, v in documented["spark"]["conf"].items()}
    assert settings.as_dict()["lake"]["backend"] == documented["lake"]["backend"]


def test_load_settings_when_conf_file_given_deep_merges_over_defaults(tmp_path):
    conf = _conf(tmp_path, """
lake:
  root: /data/lake
spark:
  conf:
    spark.sql.shuffle.partitions: 64     # unquoted number: still a Spark setting string
    spark.eventLog.enabled: true          # unquoted boolean: Spark's spelling
""")
    defaults = load_settings(env=NO_ENV)

    settings = load_settings(conf, env=NO_ENV)

    assert settings.lake.root == "/data/lake"
    assert settings.lake.backend == defaults.lake.backend  # untouched sibling keys survive
    assert settings.lake.vacuum_retention_hours == defaults.lake.vacuum_retention_hours
    assert settings.spark.conf["spark.sql.shuffle.partitions"] == "64"
    assert settings.spark.conf["spark.eventLog.enabled"] == "true"
    assert settings.spark.conf["spark.sql.session.timeZone"] == defaults.spark.conf["spark.sql.session.timeZone"]
    assert settings.spark.master == defaults.spark.master


def test_load_settings_when_env_overrides_given_types_them_as_yaml_and_beats_conf_file(tmp_path):
    conf = _conf(tmp_path, "lake:\n  vacuum_retention_hours: 24\n  root: /from/file\n")
    env = {
        "CRM_LAKE__VACUUM_RETENTION_HOURS": "12",
        "CRM_MLFLOW__TRACKING_URI": "null",
        "CRM_SPARK__CONF": "{spark.sql.shuffle.partitions: 3}",
        "CRM_SPARK__MASTER": "local[1]",
        "CRM_SPARK__CONF__spark.sql.session.timeZone": "Asia/Shanghai",  # case-sensitive Spark key
        "CRM_API_TOKEN": "not a setting: no double underscore",
    }

    settings = load_settings(conf, env=env)

    assert settings.lake.vacuum_retention_hours == 12
    assert settings.lake.root == "/from/file"
    assert settings.mlflow.tracking_uri is None
    assert settings.spark.master == "local[1]"
    assert settings.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert settings.spark.conf["spark.ui.enabled"] == "false"  # merged, not replaced
    assert settings.spark.conf["spark.sql.session.timeZone"] == "Asia/Shanghai"
    assert "spark.sql.session.timezone" not in settings.spark.conf


def test_settings_when_assigned_refuse_change():
    settings = load_settings(env=NO_ENV)
    with pytest.raises(ValidationError):
        settings.lake.root = "/elsewhere"


@pytest.mark.parametrize("text, expected", [
    ("lake:\n  rooot: /x\n", r"override\.yaml: unknown key 'lake\.rooot' \(known keys of 'lake': .*root"),
    ("lakes:\n  root: /x\n", r"override\.yaml: unknown section 'lakes'"),
    ("lake:\n  vacuum_retention_hours: a week\n",
     r"override\.yaml: bad value for 'lake\.vacuum_retention_hours': .*integer.*'a week'"),
    ("lake:\n  backend: spark\n", r"override\.yaml: bad value for 'lake\.backend'.*'spark'"),
    ("lake:\n  root: [unclosed\n", r"override\.yaml: not valid YAML at line \d+, column \d+: "),
    ("- just\n- a list\n", r"override\.yaml: expected a mapping of sections"),
])
def test_load_settings_when_conf_file_wrong_raises_one_line_naming_file_and_key(tmp_path, text, expected):
    conf = _conf(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as error:
        load_settings(conf, env=NO_ENV)
    assert str(conf) in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("env, expected", [
    ({"CRM_LAKE__ROOTT": "/x"}, r"environment variable CRM_LAKE__ROOTT: unknown key 'lake\.roott'"),
    ({"CRM_LAKES__ROOT": "/x"}, r"environment variable CRM_LAKES__ROOT: unknown section 'lakes'"),
    ({"CRM_LAKE__COMPACT_MIN_FILES": "many"},
     r"environment variable CRM_LAKE__COMPACT_MIN_FILES: bad value for 'lake\.compact_min_files'.*'many'"),
    ({"CRM_LAKE__ROOT": "[unclosed"}, r"environment variable CRM_LAKE__ROOT: not valid YAML"),
    ({"CRM_LAKE____ROOT": "/x"}, r"environment variable CRM_LAKE____ROOT: empty key"),
])
def test_load_settings_when_env_override_wrong_raises_naming_variable_and_key(env, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        load_settings(env=env)
    assert "\n" not in str(error.value)


def test_load_settings_when_conf_file_missing_raises_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: configuration file not found"):
        load_settings(tmp_path / "nowhere.yaml", env=NO_ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, env=NO_ENV)  # a folder, not a file


def test_cli_when_config_bad_exits_2_with_one_line_error(tmp_path, capsys):
    conf = _conf(tmp_path, "lake:\n  rooot: /x\n")

    code = main(["--conf", str(conf), "run", "--date", "2026-10-31"])

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0].startswith("error: configuration error: ")
    assert str(conf) in err[0] and "'lake.rooot'" in err[0]
    assert all(line.startswith(("error:", "hint:")) for line in err)


def test_cli_when_config_yaml_broken_exits_2_with_one_line_error(tmp_path, capsys):
    conf = _conf(tmp_path, "spark:\n  conf: {a: 1\n")

    code = main(["--conf", str(conf), "run"])

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0].startswith(f"error: configuration error: {conf}: not valid YAML at line")
    assert all(line.startswith(("error:", "hint:")) for line in err)
