"""WWW-Authenticate parsing (RFC 7235), including hostile input."""

from __future__ import annotations

import time

import pytest

from hawser.registry._challenge import MAX_HEADER_CHARS, parse_www_authenticate, pick_challenge


def one(header: str) -> tuple[str, dict[str, str]]:
    challenges = parse_www_authenticate(header)
    assert len(challenges) == 1, challenges
    return challenges[0].scheme, dict(challenges[0].params)


def test_docker_hub_style_bearer() -> None:
    scheme, params = one('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                         'scope="repository:library/busybox:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull"}


def test_basic_realm() -> None:
    assert one('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def test_scheme_and_names_are_case_insensitive_values_keep_case() -> None:
    assert one('BEARER Realm="https://A/Token", SERVICE=Reg') == ("bearer", {"realm": "https://A/Token",
                                                                               "service": "Reg"})


def test_commas_and_spaces_inside_quotes() -> None:
    _, params = one('Bearer realm="https://a/t?x=1,y=2", scope="repository:a:pull,push repository:b:pull"')
    assert params["realm"] == "https://a/t?x=1,y=2"
    assert params["scope"] == "repository:a:pull,push repository:b:pull"


def test_escapes_in_quoted_strings() -> None:
    _, params = one(r'Bearer realm="a \"quoted\" \\ realm", service="s\,x"')
    assert params == {"realm": 'a "quoted" \\ realm', "service": "s,x"}


def test_unquoted_token_values_and_bws_around_equals() -> None:
    _, params = one("Bearer realm = https://auth.test/token , service\t=\tsvc")
    assert params == {"realm": "https://auth.test/token", "service": "svc"}


def test_several_challenges_in_one_header() -> None:
    challenges = parse_www_authenticate('Basic realm="simple", Bearer realm="https://t/x",service="s", '
                                        'Newauth realm="apps", type=1, title="Login to \\"apps\\""')
    assert [c.scheme for c in challenges] == ["basic", "bearer", "newauth"]
    assert challenges[1].params == {"realm": "https://t/x", "service": "s"}
    assert challenges[2].params == {"realm": "apps", "type": "1", "title": 'Login to "apps"'}


def test_several_header_lines() -> None:
    challenges = parse_www_authenticate(['Basic realm="a"', 'Bearer realm="https://b/t"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]


def test_token68() -> None:
    challenges = parse_www_authenticate("Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXe==, Basic realm=x")
    assert challenges[0].scheme == "negotiate"
    assert challenges[0].token68 == "YIIBhwYGKwYBBQUCoIIBezCCAXe=="
    assert challenges[1].params == {"realm": "x"}


def test_scheme_without_params() -> None:
    challenges = parse_www_authenticate("Basic")
    assert challenges[0].scheme == "basic" and not challenges[0].params


def test_empty_list_elements_are_skipped() -> None:
    challenges = parse_www_authenticate(' , ,Bearer realm="r",, ,service="s",')
    assert [(c.scheme, dict(c.params)) for c in challenges] == [("bearer", {"realm": "r", "service": "s"})]


def test_missing_commas_between_params_are_tolerated() -> None:
    assert one('Bearer realm="r" service="s"')[1] == {"realm": "r", "service": "s"}


def test_duplicate_param_keeps_first() -> None:
    assert one('Bearer realm="https://good/t", realm="https://evil/t"')[1] == {"realm": "https://good/t"}


@pytest.mark.parametrize("header", [
    "",
    "   ",
    ",,,",
    '"quoted" scheme',
    "=realm",
    "Bearer realm=",
    'Bearer realm="unterminated',
    'Bearer realm="ends in backslash\\',
    "Bearer realm=\x00\x01\x02",
    "Bearer \u202erealm=\"x\"",
    "Bearer realm==",
    "\r\nBearer realm=x",
])
def test_hostile_or_broken_headers_never_raise(header: str) -> None:
    for challenge in parse_www_authenticate(header):
        # Whatever came out must not invent a realm from the broken part.
        assert challenge.get("realm") in ("", "x")


def test_unterminated_quote_keeps_earlier_challenges() -> None:
    challenges = parse_www_authenticate('Basic realm="ok", Bearer realm="https://x/t')
    assert challenges[0].params == {"realm": "ok"}
    # The broken bearer challenge carries no realm, so Basic is what gets answered.
    assert all(c.get("realm") == "" for c in challenges[1:])
    assert pick_challenge(challenges) == challenges[0]


def test_quoted_string_ends_at_the_next_unescaped_quote() -> None:
    challenges = parse_www_authenticate('Bearer realm="https://x/t, service="s')
    assert challenges[0].get("realm") == "https://x/t, service="


def test_huge_header_is_bounded_and_fast() -> None:
    header = "Bearer " + ", ".join(f'p{i}="{"x" * 50}"' for i in range(20000))
    start = time.monotonic()
    challenges = parse_www_authenticate(header)
    assert time.monotonic() - start < 2
    assert len(challenges) == 1
    assert len(challenges[0].params) < MAX_HEADER_CHARS // 50


def test_pathological_nesting_is_linear() -> None:
    start = time.monotonic()
    parse_www_authenticate('Bearer realm="' + '\\"' * 5000 + '"' + ",x=" * 3000)
    parse_www_authenticate("a " * 8000)
    assert time.monotonic() - start < 2


def test_pick_prefers_bearer_with_realm() -> None:
    assert pick_challenge(parse_www_authenticate('Basic realm="a", Bearer realm="https://t"')).scheme == "bearer"  # type: ignore[union-attr]
    assert pick_challenge(parse_www_authenticate('Bearer service="no realm", Basic realm="a"')).scheme == "basic"  # type: ignore[union-attr]
    assert pick_challenge(parse_www_authenticate('Digest realm="x", nonce="y"')) is None
