import pytest

from hawser.config import DEFAULT_TOML, Config, parse_config
from hawser.errors import InvalidArgument


def test_default_file_is_the_defaults() -> None:
    assert parse_config(DEFAULT_TOML) == Config()


def test_values_and_overrides() -> None:
    config = parse_config('root = "/x"\n[registry]\nmax_concurrent_downloads = 8\nstall_timeout = 5\n')
    assert config.root == "/x" and config.registry.max_concurrent_downloads == 8
    assert config.registry.stall_timeout == 5.0
    assert config.with_overrides(root=None, state="/s").state == "/s"


@pytest.mark.parametrize("text", [
    "rooot = '/x'", "root = 1", "[registry]\nmax_concurrent_downloads = 0", "snapshotter = 'zfs'",
    "[registry]\nnope = 1", "registry = 3", "root = ", "[registry]\nmax_retries = true",
])
def test_bad_config_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match="config"):
        parse_config(text)
