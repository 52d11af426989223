"""The ``authserver`` command group: one clear line and a non-zero exit for every failure a
shell user can cause (bad flags, bad configuration, an uninitialised or unreachable database,
pending migrations), never a traceback; commands that use the database check its schema
first."""

from __future__ import annotations

import functools
import os
import sys

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup, FlaskGroup, ScriptInfo

from authserver.credentials.keyring import KeyConfigurationError
from authserver.settings import ConfigurationError, mask_url
from authserver.web.errors import UNAVAILABLE_ERRORS

USAGE_EXIT = 2


def no_schema_check(f):
    """Mark a command that works without a database at the migrations' head."""
    f.skip_schema_check = True
    return f


def _loaded_app(ctx: click.Context):
    return ctx.ensure_object(ScriptInfo).load_app()


def _check_schema(callback):
    """Run ``callback`` only when the database is at the migrations' head."""

    @functools.wraps(callback)
    def checked(*args, **kwargs):
        ctx = click.get_current_context()
        if not current_app:
            ctx.with_resource(_loaded_app(ctx).app_context())
        from authserver.observability.readiness import schema_problem

        problem = schema_problem()
        if problem:
            raise click.ClickException(problem)
        return callback(*args, **kwargs)

    checked.schema_checked = True
    return checked


def _guard(command: click.Command) -> None:
    """Put the schema check in front of ``command`` (and every command of a group)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _guard(sub)
        return
    callback = command.callback
    if (callback is None or getattr(callback, "skip_schema_check", False)
            or getattr(callback, "schema_checked", False)):
        return
    command.callback = _check_schema(callback)


class CheckedGroup(AppGroup):
    """An AppGroup whose commands check the schema first (unless marked otherwise)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _guard(cmd)
        super().add_command(cmd, name)

    def group(self, *args, **kwargs):
        kwargs.setdefault("cls", CheckedGroup)
        return super().group(*args, **kwargs)


class CommandLine(CheckedGroup, FlaskGroup):
    """The top-level group: Flask's app loading, our checks, our error lines."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "authserver"
            click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(USAGE_EXIT)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigurationError, KeyConfigurationError) as exc:
            raise click.ClickException(str(exc)) from None
        except UNAVAILABLE_ERRORS + (sa.exc.ProgrammingError,) as exc:
            raise click.ClickException(_database_problem(ctx, exc)) from None


def _database_problem(ctx: click.Context, error: Exception) -> str:
    """One line saying why the database could not be used (never its password)."""
    app = ctx.obj._loaded_app if isinstance(ctx.obj, ScriptInfo) else None
    if app is None:
        return f"the database cannot be used ({type(error).__name__})"
    from authserver.storage.db import SQLITE_PATH

    path = app.extensions.get(SQLITE_PATH)
    if path and not os.path.exists(path):
        return f"the database is not initialised ({path} does not exist): run `authserver init`"
    if isinstance(error, sa.exc.ProgrammingError):
        return "the database schema is missing or outdated: run `authserver db upgrade`"
    url = mask_url(app.config["SQLALCHEMY_DATABASE_URI"])
    return f"the database does not answer ({url}): is it running, and is " \
           "SQLALCHEMY_DATABASE_URI right?"
