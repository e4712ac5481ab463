"""Settings: defaults, then KFHIR_* environment, then explicit overrides; bad values stop start-up."""
from __future__ import annotations

import pytest

from service.config import DEFAULT_MAX_BODY, Settings
from service.errors import ConfigError


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert s.database_url == "sqlite:///instance/ketamine-fhir.db"
    assert (s.log_level, s.max_body_bytes, s.max_json_depth, s.port) == ("INFO", DEFAULT_MAX_BODY, 64, 8080)


def test_environment_then_overrides() -> None:
    env = {"KFHIR_DATABASE_URL": "postgresql://u@h/db", "KFHIR_MAX_BODY_BYTES": "1000", "KFHIR_LOG_LEVEL": "debug"}
    s = Settings.load({"max_body_bytes": 10}, environ=env)
    assert (s.database_url, s.max_body_bytes, s.log_level) == ("postgresql://u@h/db", 10, "debug")


@pytest.mark.parametrize("env, named", [
    ({"KFHIR_LOG_LEVEL": "LOUD"}, "KFHIR_LOG_LEVEL"),
    ({"KFHIR_MAX_BODY_BYTES": "lots"}, "KFHIR_MAX_BODY_BYTES"),
    ({"KFHIR_MAX_JSON_DEPTH": "0"}, "KFHIR_MAX_JSON_DEPTH"),
    ({"KFHIR_DATABASE_URL": "mysql://x"}, "KFHIR_DATABASE_URL"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.load(environ=env)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="colour"):
        Settings.load({"colour": "blue"}, environ={})


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False),
                                           ("false", False), ("no", False), ("", False)])
def test_yes_no_settings(raw: str, expected: bool) -> None:
    assert Settings.load(environ={"KFHIR_SECURE_COOKIES": raw}).secure_cookies is expected


def test_a_yes_no_setting_that_is_neither_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="KFHIR_SECURE_COOKIES"):
        Settings.load(environ={"KFHIR_SECURE_COOKIES": "sometimes"})


def test_the_secret_key_is_a_setting_never_shown() -> None:
    settings = Settings.load(environ={"KFHIR_SECRET_KEY": "k" * 40})
    assert settings.secret_key == "k" * 40 and "k" * 40 not in repr(settings)
