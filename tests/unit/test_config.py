"""Config decoding: defaults, file and environment precedence, and each kind of bad
configuration named by its key in a one-line message (exit status 2 from the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "yikatong.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "yikatong.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment() -> None:
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert cfg.server.host == "127.0.0.1"
    assert cfg.embedded_database


def test_example_file_decodes_to_the_defaults() -> None:
    """The documented example must stay in step with the Struct's defaults."""
    assert load_config(EXAMPLE, env={}) == Config()


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\nhost = '0.0.0.0'\n")
    cfg = load_config(path, env={"YIKATONG_SERVER_PORT": "9100"})
    assert cfg.server.port == 9100
    assert cfg.server.host == "0.0.0.0"


def test_environment_values_are_typed_by_field(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        env={
            "YIKATONG_DATABASE_URL": "postgresql://u:p@db:5432/yk",
            "YIKATONG_SERVER_DEBUG_ROUTES": "yes",
            "YIKATONG_SERVER_SHUTDOWN_GRACE_S": "2.5",
            "YIKATONG_DATABASE_POOL_MAX_SIZE": "20",
        },
    )
    assert cfg.database.url == "postgresql://u:p@db:5432/yk"
    assert not cfg.embedded_database
    assert cfg.server.debug_routes is True
    assert cfg.server.shutdown_grace_s == 2.5
    assert cfg.database.pool_max_size == 20


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nlevel = 'debug'\n")
    assert load_config(None, env={"YIKATONG_CONFIG": str(path)}).log.level == "debug"


def test_struct_is_frozen() -> None:
    cfg = load_config(None, env={})
    with pytest.raises(AttributeError):
        cfg.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[server]\nprot = 1\n", "server.prot", "unknown key"),
        ("[metrics]\n", "metrics", "unknown key"),
        ("[server]\nport = '80'\n", "server.port", "expected `int`, got `str`"),
        ("[server]\nport = 1.5\n", "server.port", "expected `int`, got `float`"),
        ("server = 1\n", "server", "expected `object`, got `int`"),
        ("[server]\nport = 70000\n", "server.port", "expected `int` <= 65535"),
        ("[server]\nshutdown_grace_s = 0\n", "server.shutdown_grace_s", "expected `float` > 0.0"),
        ("[log]\nlevel = 'loud'\n", "log.level", "invalid enum value 'loud'"),
        ("[database]\npool_min_size = 0\n", "database.pool_min_size", ">= 1"),
        (
            "[database]\npool_min_size = 20\npool_max_size = 10\n",
            "database.pool_min_size",
            "must not exceed pool_max_size (10)",
        ),
        (
            "[database]\npool_max_size = 100\n",
            "database.pool_max_size",
            "must stay below embedded_max_connections (100)",
        ),
        ("[server\n", "file", "not valid TOML"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key == key
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "key", "reason"),
    [
        ({"YIKATONG_SERVER_PORTT": "1"}, "YIKATONG_SERVER_PORTT", "unknown setting"),
        ({"YIKATONG_CACHE_SIZE": "1"}, "YIKATONG_CACHE_SIZE", "unknown setting"),
        ({"YIKATONG_SERVER_PORT": "http"}, "YIKATONG_SERVER_PORT", "expected an integer"),
        ({"YIKATONG_SERVER_ACCESS_LOG": "maybe"}, "YIKATONG_SERVER_ACCESS_LOG", "boolean"),
        (
            {"YIKATONG_DATABASE_READY_TIMEOUT_S": "soon"},
            "YIKATONG_DATABASE_READY_TIMEOUT_S",
            "number",
        ),
        ({"YIKATONG_SERVER_PORT": "-1"}, "server.port", ">= 0"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert info.value.key == key
    assert reason in info.value.reason


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml", env={})
    assert info.value.key == "file"
    assert "cannot read" in info.value.reason


def test_cli_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YIKATONG_CONFIG", raising=False)
    path = write(tmp_path, "[server]\nport = 'eighty'\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "server.port" in err


def test_serve_process_exits_2_on_bad_config(tmp_path: Path) -> None:
    """The real console entry point, as an operator runs it."""
    path = write(tmp_path, "[database]\npool_max_size = 'ten'\n")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"yikatong: config error: database.pool_max_size: expected `int`, got `str` ({path})"
    ]


def test_cli_port_flag_is_range_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "99999"])
    assert info.value.code == 2
    assert "--port" in capsys.readouterr().err
