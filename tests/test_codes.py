"""Every text the server produces for people has a code, and both catalogues say each one (codes.py).

tests/views/test_dashboard.py checks the catalogues themselves: the same keys in both, none unused.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import codes
from codes import Text, ago_english, define, english, say

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = {language: json.loads((ROOT / "static" / "i18n" / f"{language}.json").read_text(encoding="utf-8"))
              for language in ("en", "pt-BR")}
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Folders of this repository whose Python is not zaphook's own code.
NOT_SOURCE = {".venv", "tests", "bench", "test-output", "node_modules", ".git", "migrations"}


def source_files(suffix: str):
    for path in sorted(ROOT.rglob(f"*{suffix}")):
        if not NOT_SOURCE.intersection(path.relative_to(ROOT).parts):
            yield path


def required_keys() -> dict[str, str]:
    """Catalogue key -> the code it belongs to, for every registered code."""
    return {key: code for code in codes.registered() for key in codes.catalogue_keys(code)}


@pytest.mark.parametrize("language", sorted(CATALOGUES))
def test_every_registered_code_is_in_the_catalogue(language):
    missing = sorted(key for key in required_keys() if key not in CATALOGUES[language])
    assert missing == [], f"static/i18n/{language}.json lacks {missing}"


def test_each_entry_has_the_placeholders_of_its_english():
    wrong = []
    for key, code in required_keys().items():
        text = codes.registered()[code]
        source = text[key.rsplit(".", 1)[1]] if isinstance(text, dict) else text
        wanted = set(PLACEHOLDER.findall(source))
        for language, catalogue in CATALOGUES.items():
            if set(PLACEHOLDER.findall(catalogue[key])) != wanted:
                wrong.append(f"{language} {key}: {catalogue[key]!r} should use {sorted(wanted)}")
    assert wrong == []


def test_the_english_catalogue_says_what_the_server_says():
    different = [key for key, code in required_keys().items()
                 if CATALOGUES["en"][key] != (codes.registered()[code][key.rsplit(".", 1)[1]]
                                              if isinstance(codes.registered()[code], dict) else codes.registered()[code])]
    assert different == []


def code_choices(node: ast.AST):
    """The codes an argument can be: a string constant, or either branch of ``a if ... else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from code_choices(node.body)
        yield from code_choices(node.orelse)


def codes_said(tree: ast.AST):
    """The codes named in the first argument of each ``say(...)`` call (f-strings: see the test below)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and \
                (getattr(node.func, "id", None) == "say" or getattr(node.func, "attr", None) == "say"):
            yield from code_choices(node.args[0])


def test_every_code_said_in_the_server_code_is_registered():
    registered = codes.registered()
    said, unknown = [], []
    for path in source_files(".py"):
        for code in codes_said(ast.parse(path.read_text(encoding="utf-8"))):
            said.append(code)
            if code not in registered:
                unknown.append(f"{path.relative_to(ROOT)}: {code}")
    assert len(said) > 100 and unknown == []


def test_codes_built_from_names_are_registered():
    """The codes the server builds with an f-string: each name it can be built from is registered."""
    from models import MediaFile
    from handlers.base import CONNECTION_STATES
    from storage.decrypt import CHECK_MESSAGES

    registered = codes.registered()
    built = ([f"media_error.check.{name}" for name in CHECK_MESSAGES]
             + [f"state.{state}" for state in ("unknown", *CONNECTION_STATES, *MediaFile.STATES)])
    assert [code for code in built if code not in registered] == []


def test_every_provider_url_label_has_a_code():
    from handlers import REGISTRY
    from status import URL_LABEL_CODES

    labels = {url.label for provider in REGISTRY for url in provider.webhook_urls}
    assert sorted(labels - set(URL_LABEL_CODES)) == []
    assert all(code in codes.registered() for code in URL_LABEL_CODES.values())


# --- the English side of a text ----------------------------------------------------------------------

@pytest.mark.parametrize("seconds, said", [
    (0, "just now"), (9, "just now"), (59, "59 seconds ago"), (60, "1 minute ago"), (12 * 60 + 5, "12 minutes ago"),
    (3600, "1 hour ago"), (3 * 86400 + 7, "3 days ago"), (47_000_000, "1 year ago"),
])
def test_a_time_ago_reads_as_people_say_it(seconds, said):
    assert ago_english(seconds) == said


def test_english_fills_plurals_times_nested_texts_and_lists():
    assert english("qa.applier.ok", {"count": 1, "p99_ms": 3}) == "1 acknowledged webhook waiting to be applied; lag p99 3 ms"
    assert english("qa.applier.ok", {"count": 0, "p99_ms": 3}).startswith("0 acknowledged webhooks")
    quiet = say("qa.instance.quiet", last_event_ago=782026 * 60, connection=say("state.unknown"))
    assert quiet.english == "quiet: last event 1 year ago, unknown"
    assert quiet.as_json() == {"code": "qa.instance.quiet", "params": {
        "last_event_ago": 782026 * 60, "connection": {"code": "state.unknown", "params": {}}}}
    both = say("media_error.each_way", reasons=[say("media_error.no_media_key"), say("media_error.timeout", host="h")])
    assert both.english == "the payload has no mediaKey for the WhatsApp CDN; h did not answer in time"
    assert both.as_json()["params"]["reasons"][1] == {"code": "media_error.timeout", "params": {"host": "h"}}


def test_a_code_outside_its_area_or_defined_twice_is_refused():
    with pytest.raises(ValueError):
        define("campaigns.", {"qa.oops": "x"})
    with pytest.raises(ValueError):
        define("qa.", {"qa.database.ok": "something else"})
    with pytest.raises(ValueError):
        define("qa.", {"qa.plural_without_other": {"one": "x"}})
    assert isinstance(say("qa.database.ok"), Text)
