"""The PII split: raw identity fields only in silver.customer_pii, a keyed hash in silver.customers.

The key comes from the environment (conf/clean.yaml `pii_key`), never from code or a committed file, and
is never logged. The hash is HMAC-SHA256 built from Spark's sha2; the key's pads enter the query as a
one-row broadcast table (data), not as literals, so plans printed in logs or the UI do not show them.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.clean.settings import PiiKeySettings
from jobs.common.contract import SourceSpec
from jobs.common.errors import InputError

log = logging.getLogger("crm.clean")

PII_TABLE_FIELDS = ("customer_id", "full_name", "id_number", "phone", "email", "updated_at")


def hash_key(conf: PiiKeySettings, env: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key; production refuses to run without a long enough key in the environment."""
    value = (os.environ if env is None else env).get(conf.env_var, "")
    if value:
        if conf.mode == "production" and len(value) < conf.min_length:
            raise InputError(f"{conf.env_var} is shorter than {conf.min_length} characters",
                             hint="use a random secret from the bank's secret store")
        return value.encode("utf-8")
    if conf.mode == "production":
        raise InputError(f"{conf.env_var} is not set: the PII hash key is required in production mode",
                         hint=f"export {conf.env_var} from the bank's secret store (at least "
                              f"{conf.min_length} characters)")
    log.warning("PII hashes use the public demo key (clean.pii_key.mode=demo, %s unset): "
                "use synthetic data only", conf.env_var)
    return conf.demo_key.encode("utf-8")


def normalise_id_number(column: Column) -> Column:
    """The national id as hashed: trimmed and upper-cased (a checksum letter may come either way)."""
    return F.upper(F.trim(column))


_BLOCK = 64  # SHA-256 block size (RFC 2104)


def _pads(key: bytes) -> tuple[bytes, bytes]:
    block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def with_keyed_hash(value: Column, name: str, key: bytes):
    """Adds `name` = hex HMAC-SHA256(key, UTF-8 value); null stays null."""
    def apply(frame: DataFrame) -> DataFrame:
        inner_pad, outer_pad = _pads(key)
        pads = frame.sparkSession.createDataFrame([(bytearray(inner_pad), bytearray(outer_pad))],
                                                  "_inner_pad binary, _outer_pad binary")
        inner = F.unhex(F.sha2(F.concat(F.col("_inner_pad"), F.encode(value, "UTF-8")), 256))
        return (frame.crossJoin(F.broadcast(pads))
                .withColumn(name, F.sha2(F.concat(F.col("_outer_pad"), inner), 256))
                .drop("_inner_pad", "_outer_pad"))
    return apply


def without_pii(spec: SourceSpec, id_number: str, key: bytes):
    """silver.customers rows: every non-PII field plus `id_number_hash`."""
    pii = [f.name for f in spec.fields if f.pii]

    def apply(frame: DataFrame) -> DataFrame:
        return (frame.transform(with_keyed_hash(normalise_id_number(F.col(id_number)), "id_number_hash", key))
                .drop(*pii))
    return apply


def pii_only(lineage: list[str]):
    """silver.customer_pii rows: the identity fields, the version time and lineage."""
    def apply(frame: DataFrame) -> DataFrame:
        return frame.select(*PII_TABLE_FIELDS, *lineage)
    return apply
