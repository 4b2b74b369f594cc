"""The policy line editor on layouts people write by hand, and the secret scan's classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import KeelError
from app.governance import policy
from app.governance.secrets_scan import scan


def write(root: Path, text: str) -> Path:
    path = root / policy.POLICY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "capability", "bucket"),
    [
        ('[capabilities]\nallowed = ["create_resource", "draft_migration"]  # keep\n',
         "draft_migration", "blocked"),
        ('[capabilities]\nallowed = []\nblocked = ["delete_data"]\n', "delete_data", "allowed"),
        ('# top\n[capabilities]\nallowed = [\n  "create_resource"  # last, no comma\n]\n',
         "edit_templates", "allowed"),
        ('[capabilities]\nallowed = [\n  "create_resource",\n  "draft_migration"]\n',
         "edit_templates", "allowed"),
        ('[capabilities]\n# nothing listed yet\n\n[approvals]\ntwo_approvers = ["delete_data"]\n',
         "delete_data", "needs_approval"),
        ('[approvals]\ntwo_approvers = []\n', "delete_data", "allowed"),
    ],
)  # fmt: skip
def test_move_keeps_the_rest_of_the_file_and_reads_back_exactly(
    tmp_path: Path, text: str, capability: str, bucket: policy.Bucket
) -> None:
    path = write(tmp_path, text)
    before = policy.parse(text, path)
    old, new = policy.move(tmp_path, capability, bucket)
    after = policy.load(tmp_path)
    assert after.buckets == {**before.buckets, capability: bucket}
    assert after.two_approvers == before.two_approvers
    for line in old.splitlines():  # every comment survives
        if line.strip().startswith("#"):
            assert line in new.splitlines()


def test_the_default_file_reads_back_as_the_defaults(tmp_path: Path) -> None:
    write(tmp_path, policy.default_text())
    loaded = policy.load(tmp_path)
    assert loaded.buckets == policy.defaults().buckets
    assert loaded.two_approvers == policy.defaults().two_approvers
    assert loaded.approvals_needed("redact_memory") == 2


def test_redaction_needs_two_approvers_whatever_the_policy_says(tmp_path: Path) -> None:
    write(tmp_path, "[approvals]\ntwo_approvers = []\n")
    loaded = policy.load(tmp_path)
    assert loaded.approvals_needed("redact_memory") == 2
    assert loaded.approvals_needed("apply_migration") == 1


def test_an_edit_that_would_not_read_back_is_refused_and_nothing_written(tmp_path: Path) -> None:
    # Valid TOML in a style the editor does not handle (literal strings): refuse, never guess.
    text = "[capabilities]\nallowed = ['create_resource']\n"
    path = write(tmp_path, text)
    assert policy.load(tmp_path).buckets["create_resource"] == "allowed"
    with pytest.raises(KeelError, match="cannot edit"):
        policy.move(tmp_path, "create_resource", "blocked")
    assert path.read_text() == text


SECRETS = {
    "private key": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "GitHub token": "token = ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "API key (sk-)": "OPENAI = 'sk-" + "proj-abcdefghijklmnop1234'",
    "AWS access key": "AKIA" + "IOSFODNN7EXAMPLE",
    "Slack token": "xoxb-" + "1234567890-abcdefghij",
    "GitLab token": "glpat-" + "abcdefghij1234567890",
    "password in a connection URL": "url = 'postgresql://app:s3cret@db:5432/app'",
    "high-entropy string": "k = 'Zx9Qm2Lr7Tv4Wn8Kp3Hs6Jd1Fg5Bc0Ya'",
}


@pytest.mark.parametrize(("kind", "line"), sorted(SECRETS.items()))
def test_scan_names_the_line_and_the_class(kind: str, line: str) -> None:
    assert [(f.line, f.kind) for f in scan(f"first line\n{line}\n")] == [(2, kind)]


def test_scan_leaves_ordinary_project_text_alone() -> None:
    text = "\n".join([
        "from app.admin import Resource",
        "CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);",
        "commit 3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "database_url = 'postgresql://app:***@db/app'",
        "database_url = 'postgresql://localhost/app'",
        "See https://example.com/a/very/long/path/to/some_documentation_page_here",
        "task-list: skip-these-ordinary-hyphenated-words-in-a-row",
    ])  # fmt: skip
    assert scan(text) == []
