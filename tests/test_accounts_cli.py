"""``authserver accounts`` and the ``--account`` options of the CLI (issue 13, item 6)."""

from __future__ import annotations

import json

from conftest import basic_auth

import authserver.admin.cli

main = authserver.admin.cli.main
PASSWORD = "correct horse battery"


def invoke(runner, *args: str, **kwargs):
    return runner.invoke(main, list(args), **kwargs)


def invoke_json(runner, *args: str):
    result = invoke(runner, *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_accounts_create_list_show_disable_enable(runner, tenants):
    created = invoke_json(runner, "accounts", "create", "--name", "Customer A")
    assert created["name"] == "Customer A" and created["enabled"] is True
    assert created["platform"] is False and len(created["id"]) == 22
    listed = invoke_json(runner, "accounts", "list")
    assert [row["id"] for row in listed] == [tenants.platform(), created["id"]]
    text = invoke(runner, "accounts", "list").stdout.splitlines()
    assert text[0].startswith(tenants.platform()) and "platform" in text[0]
    assert created["id"] in text[1] and "customer" in text[1] and "Customer A" in text[1]
    assert invoke_json(runner, "accounts", "show", created["id"]) == created

    disabled = invoke_json(runner, "accounts", "disable", created["id"])
    assert disabled["enabled"] is False and disabled["disabledAt"]
    assert invoke_json(runner, "accounts", "enable", created["id"])["enabled"] is True


def test_accounts_errors_go_to_stderr_with_status_1(runner, tenants):
    for args in (("show", "AAAAAAAAAAAAAAAAAAAAAA"), ("show", "not-an-id"),
                 ("disable", "AAAAAAAAAAAAAAAAAAAAAA"), ("create", "--name", " ")):
        result = invoke(runner, "accounts", *args)
        assert result.exit_code == 1 and result.stdout == "" and "error:" in result.stderr, args
    refused = invoke(runner, "accounts", "disable", tenants.platform())
    assert refused.exit_code == 1 and "platform account cannot be disabled" in refused.stderr


def test_clients_and_keys_go_into_the_named_account_and_list_by_account(runner, tenants):
    a, b = tenants.create("A"), tenants.create("B")
    platform = tenants.platform()
    default = invoke_json(runner, "clients", "create", "--name", "own", "--scope", "sms:manage")
    in_a = invoke_json(runner, "clients", "create", "--name", "a", "--scope", "sms:manage",
                       "--account", a)
    assert default["accountId"] == platform and in_a["accountId"] == a
    key = invoke_json(runner, "api-keys", "create", "--name", "b", "--scope", "sms:manage",
                      "--account", b)
    own_key = invoke_json(runner, "api-keys", "create", "--name", "own", "--scope", "sms:manage")
    assert key["accountId"] == b and own_key["accountId"] == platform

    assert [row["clientId"] for row in invoke_json(runner, "clients", "list", "--account", a)] \
        == [in_a["clientId"]]
    assert [row["id"] for row in invoke_json(runner, "api-keys", "list", "--account", b)] \
        == [key["id"]]
    assert len(invoke_json(runner, "clients", "list")) == 2  # without --account: all
    lines = invoke(runner, "api-keys", "list").stdout
    assert f"{key['id']}  {b}" in lines and f"{own_key['id']}  {platform}" in lines
    lines = invoke(runner, "clients", "list").stdout
    assert f"{in_a['clientId']}  {a}" in lines

    for args in (("clients", "create", "--name", "x", "--scope", "sms:manage"),
                 ("api-keys", "create", "--name", "x", "--scope", "sms:manage"),
                 ("clients", "list"), ("api-keys", "list"), ("operators", "list")):
        result = invoke(runner, *args, "--account", "AAAAAAAAAAAAAAAAAAAAAA")
        assert result.exit_code == 1 and "not found" in result.stderr, args


def test_AC03_cli_refuses_accounts_manage_outside_the_platform(runner, tenants):
    a = tenants.create("A")
    result = invoke(runner, "clients", "create", "--name", "x", "--scope", "accounts:manage",
                    "--account", a)
    assert result.exit_code == 1 and "platform account" in result.stderr
    assert invoke(runner, "clients", "create", "--name", "x", "--scope",
                  "accounts:manage").exit_code == 0


def test_operators_belong_to_an_account(runner, tenants):
    a = tenants.create("A")
    result = invoke(runner, "operators", "create", "--username", "ann", "--password-stdin",
                    "--account", a, input=PASSWORD + "\n")
    assert result.exit_code == 0 and a in result.stdout
    assert invoke(runner, "operators", "create", "--username", "root", "--password-stdin",
                  input=PASSWORD + "\n").exit_code == 0
    rows = invoke_json(runner, "operators", "list", "--account", a)
    assert [(row["username"], row["accountId"]) for row in rows] == [("ann", a)]
    everyone = {row["username"]: row["accountId"]
                for row in invoke_json(runner, "operators", "list")}
    assert everyone == {"ann": a, "root": tenants.platform()}


def test_AC04_disabling_from_the_cli_stops_the_accounts_clients(runner, client, tenants):
    a = tenants.create("A")
    created = invoke_json(runner, "clients", "create", "--name", "a", "--scope", "sms:manage",
                          "--account", a)
    auth = basic_auth(created["clientId"], created["clientSecret"])
    form = {"grant_type": "client_credentials"}
    assert client.post("/oauth2/token", data=form, headers=auth).status_code == 200
    assert invoke(runner, "accounts", "disable", a).exit_code == 0
    assert client.post("/oauth2/token", data=form, headers=auth).get_json()["error"] \
        == "invalid_client"
    assert invoke(runner, "accounts", "enable", a).exit_code == 0
    assert client.post("/oauth2/token", data=form, headers=auth).status_code == 200
