"""Issue 12, cases 7, 8 and 10 on the config side: YAML alias bombs and duplicate keys refused naming the file;
``check`` opens the journal (a corrupt one is named with what to do) and refuses a root of ``/``, a root equal to
``cache.dir``, an empty basic-auth password; an unset ``${VAR}`` is named. Real files, the real CLI; ``check``
against the real Label Studio where the key is checked."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchlabel.cli import main
from batchlabel.config import ConfigError, load_config

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
storage: {root: images}
label_studio: {labels: [cat], extra: *i}
"""


def test_yaml_alias_bomb_is_refused_quickly_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    outcome: list[Any] = []

    def load() -> None:
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the alias bomb hung load_config"
    assert time.monotonic() - started < 30
    [error] = outcome
    assert str(path) in str(error) and "alias" in str(error)


def test_recursive_alias_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("storage: &s {root: images, more: *s}\nlabel_studio: {labels: [cat]}\n")
    with pytest.raises(ConfigError, match=r"recursive.yaml: .*alias refers to its own anchor"):
        load_config(recursive, environ={})
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("storage: {root: images}\nlabel_studio: {labels: [cat]}\nstorage: {root: other}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: not valid YAML \(line 3.*duplicate key 'storage' \(first "):
        load_config(duplicate, environ={})


def _config_file(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    raw: dict[str, Any] = {"storage": {"root": str(tmp_path / "images")},
                           "label_studio": {"url": None, "labels": ["cat"]},
                           "model": {"name": "litemedsam"}, "cache": {"dir": str(tmp_path / "cache")}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"storage": {"root": "/"}}, "storage.root: / is the file system root"),
        ({"cache": {"dir": "SAME"}}, "is also cache.dir"),
        ({"serve": {"username": "ann", "password": ""}}, "serve.password: basic auth with an empty"),
    ],
)
def test_check_refuses_dangerous_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          sections: dict[str, Any], expected: str) -> None:
    if sections.get("cache", {}).get("dir") == "SAME":
        sections = {"cache": {"dir": str(tmp_path / "images")}}
    assert main(["check", str(_config_file(tmp_path, **sections))]) == 1
    out = capsys.readouterr().out
    assert expected in out and "[FAIL]" in out


def test_corrupt_journal_is_named_by_check_and_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config_file(tmp_path)
    journal = tmp_path / "cache" / "journal.sqlite3"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"this is not a database, it was overwritten" * 100)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"journal: {journal}: the ingestion journal is corrupt" in out and "mv " in out
    assert "all checks passed" not in out
    assert main(["status", str(path)]) == 2  # a clear message, no traceback
    err = capsys.readouterr().err
    assert str(journal) in err and "rebuilds it" in err and "Traceback" not in err


@pytest.mark.labelstudio
def test_check_names_the_unset_variable_not_label_studio_api_key(
    label_studio: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import config_dict_for

    monkeypatch.delenv("MY_TEAM_LS_TOKEN", raising=False)
    raw = config_dict_for(label_studio, tmp_path)
    raw["label_studio"]["api_key"] = "${MY_TEAM_LS_TOKEN}"
    path = tmp_path / "unset.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "${MY_TEAM_LS_TOKEN}" in out and "export MY_TEAM_LS_TOKEN" in out
