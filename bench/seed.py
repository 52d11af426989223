"""Bulk rows for the scale cases: many API keys and clients in PostgreSQL, in seconds.

Each new row is a copy of a template row made through the CLI (so every column the
schema has, now or after a migration, holds a value the application wrote) with a fresh
id, name and secret hash. The secrets are real: API keys in the ``asak_`` format with a
valid checksum, client secrets of 256 random bits; only their SHA-256 is stored, as the
services do. The secrets themselves are thrown away.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time

import psycopg
from psycopg import sql

from resource_demo.guard.api_key_format import (
    ALPHABET,
    RANDOM_LENGTH,
    assemble_api_key,
    check_api_key_format,
)

CHUNK = 50_000
ACCOUNT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Byte -> base62 character (a slight bias is irrelevant for benchmark rows).
_TO_BASE62 = bytes(ord(ALPHABET[b % 62]) for b in range(256))


def fake_api_keys(count: int):
    """``count`` well-formed API key secrets (prefix, random part, CRC-32 checksum)."""
    pool = os.urandom(count * RANDOM_LENGTH).translate(_TO_BASE62).decode()
    for i in range(count):
        random_part = pool[i * RANDOM_LENGTH:(i + 1) * RANDOM_LENGTH]
        yield assemble_api_key(random_part)


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND table_name = %s "
                        "ORDER BY ordinal_position", (table,)).fetchall()
    return [row[0] for row in rows]


def _clone(conn: psycopg.Connection, table: str, key_column: str, template_key: str,
           fresh: list[str], skip: tuple[str, ...], lines) -> None:
    """COPY ``fresh`` columns of new rows into a temp table, then INSERT them with every
    other column copied from the template row."""
    copied = [c for c in _columns(conn, table) if c not in fresh and c not in skip]
    conn.execute(sql.SQL("CREATE TEMP TABLE bench_fresh ({}) ON COMMIT DROP").format(
        sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in fresh)))
    with conn.cursor().copy(sql.SQL("COPY bench_fresh ({}) FROM STDIN").format(
            sql.SQL(", ").join(map(sql.Identifier, fresh)))) as copy:
        batch = []
        for line in lines:
            batch.append(line)
            if len(batch) >= CHUNK:
                copy.write("".join(batch))
                batch.clear()
        if batch:
            copy.write("".join(batch))
    conn.execute(sql.SQL(
        "INSERT INTO {table} ({fresh}, {copied}) SELECT {fresh_f}, {copied_t} "
        "FROM bench_fresh f CROSS JOIN (SELECT {copied} FROM {table} WHERE {key} = %s) t"
    ).format(table=sql.Identifier(table), key=sql.Identifier(key_column),
             fresh=sql.SQL(", ").join(map(sql.Identifier, fresh)),
             copied=sql.SQL(", ").join(map(sql.Identifier, copied)),
             fresh_f=sql.SQL(", ").join(sql.Identifier("f", c) for c in fresh),
             copied_t=sql.SQL(", ").join(sql.Identifier("t", c) for c in copied)),
        (template_key,))


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                        ).fetchone()[0]


def add_api_keys(dsn: str, template_id: str, total: int) -> int:
    """Grow ``api_keys`` to ``total`` rows by cloning key ``template_id``; rows added."""
    with psycopg.connect(dsn) as conn:
        missing = total - _count(conn, "api_keys")
        if missing <= 0:
            return 0
        sample = next(fake_api_keys(1))
        assert check_api_key_format(sample), "seed keys must pass the service's format check"

        def lines():
            ids = os.urandom(16 * missing).hex().upper()
            for i, key in enumerate(fake_api_keys(missing)):
                digest = hashlib.sha256(key.encode()).hexdigest()
                yield f"{ids[32 * i:32 * (i + 1)]}\t{digest}\tbench key {i}\n"

        _clone(conn, "api_keys", "id", template_id, ["id", "secret_hash", "name"], (),
               lines())
    return missing


def add_clients(dsn: str, template_client_id: str, total: int) -> int:
    """Grow ``clients`` to ``total`` rows by cloning ``template_client_id``; rows added."""
    with psycopg.connect(dsn) as conn:
        missing = total - _count(conn, "clients")
        if missing <= 0:
            return 0

        def lines():
            for i in range(missing):
                digest = hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()
                yield f"{secrets.token_hex(16)}\t{digest}\tbench client {i}\n"

        _clone(conn, "clients", "client_id", template_client_id,
               ["client_id", "secret_hash", "name"], ("id",), lines())
    return missing


def add_accounts(dsn: str, count: int) -> list[str]:
    """``count`` more enabled customer accounts (opaque ids as the service makes them); ids."""
    ids = ["".join(secrets.choice(ACCOUNT_ALPHABET) for _ in range(22)) for _ in range(count)]
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy("COPY accounts (id, name, enabled, created_at, updated_at) "
                                "FROM STDIN") as copy:
            for i, account_id in enumerate(ids):
                copy.write(f"{account_id}\tbench account {i}\tt\t{now}\t{now}\n")
    return ids


def spread_over_accounts(dsn: str, table: str, key_column: str, account_ids: list[str],
                         keep: tuple[str, ...] = ()) -> int:
    """Give the rows of ``table`` (but ``keep``) to ``account_ids`` round robin, so each
    account holds the same number; rows moved."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMP TABLE bench_accounts (n integer PRIMARY KEY, id text) "
                     "ON COMMIT DROP")
        with conn.cursor().copy("COPY bench_accounts (n, id) FROM STDIN") as copy:
            for n, account_id in enumerate(account_ids):
                copy.write(f"{n}\t{account_id}\n")
        moved = conn.execute(sql.SQL(
            "UPDATE {table} t SET account_id = a.id FROM ("
            "  SELECT {key}, (row_number() OVER (ORDER BY {key}) - 1) %% %s AS n FROM {table}"
            "  WHERE NOT ({key} = ANY(%s))) r "
            "JOIN bench_accounts a ON a.n = r.n WHERE t.{key} = r.{key}"
        ).format(table=sql.Identifier(table), key=sql.Identifier(key_column)),
            (len(account_ids), list(keep))).rowcount
    return moved


def vacuum_analyze(dsn: str) -> None:
    """Fresh statistics and visibility map, as a database in steady state has."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("api_keys", "clients", "accounts"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


def seed(dsn: str, *, key_template: str, client_template: str, api_keys: int,
         clients: int) -> dict:
    """Grow both tables, vacuum, and say how long it took."""
    started = time.monotonic()
    added_keys = add_api_keys(dsn, key_template, api_keys)
    added_clients = add_clients(dsn, client_template, clients)
    vacuum_analyze(dsn)
    return {"api_keys_added": added_keys, "clients_added": added_clients,
            "seconds": round(time.monotonic() - started, 1)}
