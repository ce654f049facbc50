"""One typed loader for every setting of the pipeline.

Defaults live in `conf/*.yaml` (documented there, one section per file for the jobs, shared sections in
`conf/pipeline.yaml`); a `--conf FILE` is deep-merged over them, then `CRM_<SECTION>__<KEY>[__<KEY>…]`
environment variables. Every section is a pydantic model that forbids unknown keys, so a typo is an error
that names the file or variable, the dotted key and what was expected.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from jobs.common.paths import CONF_DIR


class ConfigError(ValueError):
    """A configuration file, override or value is wrong; the message says where and why."""


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    # Environment overrides arrive YAML-typed: "2" is an int, yet a str setting may take it.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class LakeSettings(Section):
    root: str
    backend: Literal["auto", "delta-rs", "delta-jvm"]
    vacuum_retention_hours: int
    compact_min_files: int
    compact_small_file_mb: int


class RootSettings(Section):
    root: str


class BankSettings(Section):
    timezone: str
    currency: str


class SparkSettings(Section):
    master: str
    app_name: str
    conf: dict[str, str]

    @field_validator("conf", mode="before")
    @classmethod
    def _spark_spelling(cls, conf: Any) -> Any:
        # An unquoted `true` in YAML is a bool; Spark settings spell it "true", not Python's "True".
        if isinstance(conf, Mapping):
            return {k: str(v).lower() if isinstance(v, bool) else v for k, v in conf.items()}
        return conf


class MlflowSettings(Section):
    tracking_uri: str | None
    artifact_root: str | None
    experiment_prefix: str


class SparkSubmitSettings(Section):
    conn_id: str
    application: str
    py_files: str
    archives: str
    conf: dict[str, str]


class SchedulingSettings(Section):
    mode: Literal["local", "cluster"]
    timezone: str
    nightly_cron: str
    retrain_cron: str
    maintenance_cron: str
    start_date: str
    catchup: bool
    retries: int
    retry_delay_minutes: int
    task_timeout_minutes: int
    crm_pipeline: str
    conf_file: str | None
    alert_dir: str | None
    alert_command: str | None
    spark_submit: SparkSubmitSettings


CORE_SECTIONS: dict[str, type[Section]] = {
    "lake": LakeSettings,
    "landing": RootSettings,
    "outbox": RootSettings,
    "reports": RootSettings,
    "bank": BankSettings,
    "spark": SparkSettings,
    "mlflow": MlflowSettings,
    "scheduling": SchedulingSettings,
}

# Each job owns its section: the model in its package, the defaults in conf/<section>.yaml.
JOB_SECTIONS: dict[str, str] = {
    "generator": "jobs.generate.settings:GeneratorSettings",
    "ingest": "jobs.ingest.settings:IngestSettings",
    "clean": "jobs.clean.settings:CleanSettings",
    "features": "jobs.features.settings:FeatureSettings",
    "kmeans": "jobs.kmeans_mr.settings:KMeansSettings",
    "apriori": "jobs.apriori.settings:AprioriSettings",
    "churn": "jobs.churn.settings:ChurnSettings",
    "push": "jobs.push.settings:PushSettings",
}


def _job_model(section: str) -> type[Section]:
    module_name, _, attr = JOB_SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module_name), attr)


class Settings:
    """The validated configuration: `settings.lake.root`, `settings.job("kmeans").k`, …"""

    def __init__(self, sections: Mapping[str, Section]):
        self._sections = dict(sections)

    def __getattr__(self, name: str) -> Section:
        try:
            return self.__dict__["_sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def job(self, section: str) -> Section:
        return self._sections[section]

    def as_dict(self) -> dict[str, Any]:
        return {name: model.model_dump() for name, model in self._sections.items()}

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{Path(self.lake.root).resolve() / '_mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        return self.mlflow.artifact_root or str(Path(self.lake.root).resolve() / "_mlflow" / "artifacts")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: where, then what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any], origin: str, trail: str = "") -> None:
    for key, value in override.items():
        where = f"{trail}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value, origin, where + ".")
        else:
            base[key] = value
        base.setdefault("__origin__", {})[key] = origin


def _env_overrides(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One nested override per CRM_<SECTION>__<KEY> variable, with the variable's name as its origin."""
    overrides = []
    for name, raw in sorted(env.items()):
        if not name.startswith("CRM_") or "__" not in name:
            continue  # CRM_ variables without "__" are not settings (e.g. secrets read by the jobs)
        origin = f"environment variable {name}"
        # Upper-case parts are the environment's spelling of our snake_case keys; a mixed-case part
        # is a key spelt exactly, e.g. the case-sensitive spark.sql.session.timeZone under spark.conf.
        path = [part.lower() if part.isupper() or part.islower() else part
                for part in name[len("CRM_"):].split("__")]
        if not all(path):
            raise ConfigError(f"{origin}: empty key; use CRM_<SECTION>__<KEY>")
        try:
            value: Any = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: {_yaml_problem(exc)} (quote the value if it is text)") from None
        for part in reversed(path):
            value = {part: value}
        overrides.append((origin, value))
    return overrides


def _strip_origins(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_origins(v) for k, v in data.items() if k != "__origin__"}
    return data


def _origin_of(data: dict[str, Any], section: str, loc: tuple[Any, ...]) -> str:
    node: Any = data.get(section, {})
    origin = data.get("__origin__", {}).get(section, "conf/")
    for part in loc:
        if not isinstance(node, dict):
            break
        origin = node.get("__origin__", {}).get(part, origin)
        node = node.get(part)
    return origin


def _validate(section: str, model: type[Section], data: dict[str, Any]) -> Section:
    try:
        return model.model_validate(_strip_origins(data.get(section, {})))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in (section, *loc))
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                problem = f"unknown key {key!r} (known keys of {section!r}: {known})"
            elif err["type"] == "missing":
                problem = f"missing key {key!r}"
            else:
                problem = f"bad value for {key!r}: {err['msg']} (got {err.get('input')!r})"
            problems.append(f"{_origin_of(data, section, loc)}: {problem}")
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError("; ".join(problems[:3]) + more) from None


def load_settings(conf_file: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None,
                  conf_dir: Path = CONF_DIR) -> Settings:
    """Defaults from `conf_dir`, then `conf_file`, then `CRM_*__*` variables of `env` (os.environ)."""
    merged: dict[str, Any] = {}
    for path in sorted(conf_dir.glob("*.yaml")):
        if path.name == "campaigns.yaml":
            continue  # campaign definitions are data with their own loader (jobs/push)
        _deep_merge(merged, _read_yaml(path), str(path))
    if conf_file is not None:
        _deep_merge(merged, _read_yaml(Path(conf_file)), str(conf_file))
    for origin, override in _env_overrides(os.environ if env is None else env):
        _deep_merge(merged, override, origin)

    known = {**{name: None for name in CORE_SECTIONS}, **{name: None for name in JOB_SECTIONS}}
    unknown = sorted(set(merged) - set(known) - {"__origin__"})
    if unknown:
        origins = merged.get("__origin__", {})
        raise ConfigError("; ".join(
            f"{origins.get(name, 'conf/')}: unknown section {name!r} (known: {', '.join(sorted(known))})"
            for name in unknown))

    sections: dict[str, Section] = {}
    for name, model in CORE_SECTIONS.items():
        sections[name] = _validate(name, model, merged)
    for name in JOB_SECTIONS:
        sections[name] = _validate(name, _job_model(name), merged)
    return Settings(sections)
