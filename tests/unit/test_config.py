"""``channelserver.config``: each setting defined once, everything else generated from it.

Unknown keys name the closest valid key; bad values name the field and the value; every
option documents itself; the generated command-line flags parse back to the values they
were given.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args, get_type_hints

import pytest

from channelserver.config import Config, Option, add_arguments, config_from_args, options
from channelserver.errors import ConfigError

OPTIONS = list(options())


def test_unknown_key_names_the_closest_one() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"keep_alive_timout": 3})
    assert str(info.value) == "unknown key 'keep_alive_timout' in settings; did you mean 'keep_alive_timeout'?"
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"ws_ping_intervall": 3}, source="settings.CHANNELSERVER")
    assert str(info.value) == (
        "unknown key 'ws_ping_intervall' in settings.CHANNELSERVER; did you mean 'ws_ping_interval'?"
    )


def test_unknown_key_with_nothing_close_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"zzz": 1})
    text = str(info.value)
    assert text.startswith("unknown key 'zzz' in settings; valid keys: host, port, ")
    assert all(opt.name in text for opt in OPTIONS)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("port", "eighty", "port='eighty' is not an integer"),
        ("port", True, "port=True is not an integer"),
        ("port", 70000, "port=70000 is not between 0 and 65535"),
        ("ws_max_size", 1.5, "ws_max_size=1.5 is not an integer"),
        ("lifespan", "maybe", "lifespan='maybe' is not one of: auto, on, off"),
        ("log_level", "loud", "log_level='loud' is not one of: critical, error, warning, info, debug"),
        ("access_log", "perhaps", "access_log='perhaps' is not a boolean"),
        ("ws_ping_interval", "soon", "ws_ping_interval='soon' is not a number"),
        ("keep_alive_timeout", -1, "keep_alive_timeout=-1.0 must not be negative"),
        ("keep_alive_timeout", None, "keep_alive_timeout may not be None"),
        ("workers", 0, "workers=0 must be at least 1"),
        ("host", 5, "host=5 is not a string"),
    ],
)
def test_bad_value_names_the_field_and_the_value(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({key: value})
    assert str(info.value) == message


NUMERIC = [opt for opt in OPTIONS if opt.type in (int, float)]


@pytest.mark.parametrize("opt", NUMERIC, ids=[opt.name for opt in NUMERIC])
def test_negative_numbers_are_refused_everywhere(opt: Option) -> None:
    """No size, count, port or duration is negative; a negative one is a typo to report,
    not a timer that fires at once or a limit that refuses everything."""
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({opt.name: -1})
    assert opt.name in str(info.value) and "-1" in str(info.value)


@pytest.mark.parametrize("opt", OPTIONS, ids=[opt.name for opt in OPTIONS])
def test_every_option_documents_itself(opt: Option) -> None:
    assert opt.help.strip(), f"{opt.name} has no help text"
    assert opt.help[0].isupper() and opt.help.rstrip().endswith("."), opt.help
    assert opt.flag == "--" + opt.name.replace("_", "-")
    assert opt.group
    if opt.name.endswith(("_timeout", "_interval")):
        assert opt.unit == "seconds", f"{opt.name} is a duration: say its unit"
    if opt.name.endswith("_size"):
        assert opt.unit == "bytes", f"{opt.name} is a size: say its unit"


def test_help_of_the_generated_parser_shows_every_option() -> None:
    parser = argparse.ArgumentParser(prog="channelserver")
    add_arguments(parser)
    text = parser.format_help()
    for opt in OPTIONS:
        assert opt.flag in text
        if opt.is_bool:
            assert "--no-" + opt.flag[2:] in text


def non_default(opt: Option) -> tuple[list[str], Any]:
    """A command line that sets ``opt`` to something other than its default, and the
    value it must give."""
    if opt.is_bool:
        return ([f"--no-{opt.flag[2:]}"] if opt.default else [opt.flag]), not opt.default
    if opt.choices:
        value = next(c for c in opt.choices if c != opt.default)
        return [opt.flag, value], value
    if opt.name == "forwarded_allow_ips":
        return [opt.flag, "10.0.0.1, 10.1.0.0/16"], ("10.0.0.1", "10.1.0.0/16")
    if opt.name == "metrics":  # an address
        return [opt.flag, "127.0.0.1:9100"], "127.0.0.1:9100"
    if opt.name in ("ws_deflate_window_bits", "ws_deflate_mem_level"):  # bounded: 9-15, 1-9
        return [opt.flag, str(opt.default - 2)], opt.default - 2
    if opt.type is int:
        value = 7 if opt.default in (None, 0) else opt.default + 7
        return [opt.flag, str(value)], value
    if opt.type is float:
        value = 2.5 if opt.default is None else opt.default + 1.5
        return [opt.flag, str(value)], value
    value = f"/tmp/{opt.name}.value"
    return [opt.flag, value], value


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="channelserver")
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_no_flags_give_the_defaults() -> None:
    assert parse([]) == Config()


#: Settings another one needs: a key file needs its certificate.
NEEDS = {"ssl_keyfile": {"ssl_certfile": "/tmp/cert.pem"}}


@pytest.mark.parametrize("opt", OPTIONS, ids=[opt.name for opt in OPTIONS])
def test_generated_flag_parses_back_to_the_value(opt: Option) -> None:
    argv, expected = non_default(opt)
    assert expected != opt.default
    for name, value in NEEDS.get(opt.name, {}).items():
        argv += ["--" + name.replace("_", "-"), value]
    config = parse(argv)
    assert getattr(config, opt.name) == expected
    # The same value as a setting gives the same Config.
    assert Config.from_mapping({opt.name: expected, **NEEDS.get(opt.name, {})}) == config


def test_all_flags_at_once() -> None:
    argv: list[str] = []
    expected: dict[str, Any] = {}
    for opt in OPTIONS:
        more, value = non_default(opt)
        argv += more
        expected[opt.name] = value
    config = parse(argv)
    assert {name: getattr(config, name) for name in expected} == expected


OPTIONAL_NUMBERS = [
    o for o in NUMERIC if o.default is not None and type(None) in get_args(get_type_hints(Config)[o.name])
]


@pytest.mark.parametrize("opt", OPTIONAL_NUMBERS, ids=[o.name for o in OPTIONAL_NUMBERS])
def test_optional_numbers_can_be_unset_from_the_command_line(opt: Option) -> None:
    assert getattr(parse([opt.flag, "none"]), opt.name) is None


def test_bad_flag_value_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse(["--port", "abc"])
    assert str(info.value) == "port='abc' is not an integer"


def test_settings_layered_under_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--port", "9000"]), base={"port": 8001, "workers": 3})
    assert (config.port, config.workers) == (9000, 3)


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]
    assert config.replace(port=1).port == 1


def test_an_option_takes_a_default_or_a_factory_never_both() -> None:
    from channelserver.config import option

    with pytest.raises(TypeError, match="a default or a default_factory"):
        option(1, "help", default_factory=lambda: 1)
    with pytest.raises(TypeError, match="a default or a default_factory"):
        option(help="help")
    with pytest.raises(TypeError, match="a help text"):
        option(1)
