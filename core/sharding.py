"""Which Redis shard owns a user: jump consistent hash (Lamping & Veach, 2014).

Pure and deterministic across processes and restarts. Growing from n to n+1
shards moves only about 1/(n+1) of the users, and only onto the new shard.
"""

from __future__ import annotations

import hashlib

_JUMP_MULTIPLIER = 2862933555777941757
_MASK_64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Map a 64-bit key to a bucket in [0, buckets)."""
    if buckets <= 0:
        raise ValueError("buckets must be positive")
    key &= _MASK_64
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK_64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def key_hash(user_id: str) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process, so unusable here)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")


def shard_for(user_id: str, shards: int) -> int:
    return jump_hash(key_hash(user_id), shards)
