"""Pseudonymisation of user ids with a keyed hash (HMAC-SHA256), in Spark built-ins.

The key never becomes a literal in a query plan (plans reach logs, the Spark UI and event
logs): it travels in a one-row DataFrame that is broadcast and joined, so plans show only a
column name. The pseudonym is the first 60 bits of the HMAC as a BIGINT: compact, joinable,
and without the key it cannot be linked back to the user id.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_BLOCK = 64  # SHA-256 block size in bytes


def _pads(key: bytes) -> tuple[bytes, bytes]:
    import hashlib

    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256_hex(message: Column, ipad: Column, opad: Column) -> Column:
    inner = F.unhex(F.sha2(F.concat(ipad, F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(opad, inner), 256)


def pseudonymise(df: DataFrame, id_column: str, out_column: str, key: bytes) -> DataFrame:
    """Replace id_column by out_column = first 60 bits of HMAC-SHA256(key, str(id)) as BIGINT."""
    ipad, opad = _pads(key)
    key_frame = df.sparkSession.createDataFrame(
        [(bytearray(ipad), bytearray(opad))], "_hmac_ipad binary, _hmac_opad binary")
    digest = hmac_sha256_hex(F.col(id_column).cast("string"), F.col("_hmac_ipad"), F.col("_hmac_opad"))
    pseudonym = F.conv(F.substring(digest, 1, 15), 16, 10).cast("long")
    columns = [pseudonym.alias(out_column) if c == id_column else F.col(c) for c in df.columns]
    return df.crossJoin(F.broadcast(key_frame)).select(*columns)


def pseudonym_of(user_id: int, key: bytes) -> int:
    """The same pseudonym computed in Python (for tests and for joining ground truth)."""
    import hashlib
    import hmac

    return int(hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:15], 16)


FINGERPRINT_PROPERTY = "ecomlake.pseudonymisation.keyFingerprint"
_FINGERPRINT_LABEL = b"ecomlake pseudonymisation key fingerprint v1"


def key_fingerprint(key: bytes) -> str:
    """Which key built a table, without the key: HMAC-SHA256(key, a fixed label), 16 hex digits.
    Stored in silver/events' table properties, so that a run with another key is refused."""
    import hashlib
    import hmac

    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]
