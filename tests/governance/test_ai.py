"""`keel ai`: policy, proposals, approvals by real Keel users, apply, log (AI governance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.governance.conftest import PASSWORD, Keel, audit_rows, proposal_id
from tests.helpers import REPO, keel_env


def stage(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"draft-{name}"
    path.write_text(text)
    return str(path)


def test_status_shows_built_in_defaults_then_the_initialised_policy(
    keel: Keel, project: Path
) -> None:
    r = keel("ai", "status")
    assert r.code == 0, r.err
    assert "built-in defaults" in r.out
    assert "Needs approval" in r.out and "Blocked" in r.out
    assert "apply_migration" in r.out and "[2 approvers]" in r.out
    assert keel("ai", "init").code == 0
    assert (project / ".keel" / "ai.toml").is_file()
    data = json.loads(keel("ai", "status", "--json").out)
    assert data["source"].endswith(".keel/ai.toml")
    assert data["capabilities"]["edit_ai_policy"]["bucket"] == "blocked"
    assert data["capabilities"]["redact_memory"]["approvals_needed"] == 2
    again = keel("ai", "init")
    assert again.code == 1 and "already exists" in again.err and "Traceback" not in again.err


def test_the_current_directory_is_the_project_by_default(keel: Keel, project: Path) -> None:
    assert keel("ai", "init", cwd=project).code == 0
    assert (project / ".keel" / "ai.toml").is_file()
    r = keel("ai", "status", cwd=project.parent)
    assert r.code == 2 and "is not a site project" in r.err


def test_a_malformed_policy_is_explained(keel: Keel, project: Path) -> None:
    policy = project / ".keel" / "ai.toml"
    policy.parent.mkdir()
    for text, words in (
        ("[capabilities\n", "malformed"),
        ('[capabilities]\nallowed = ["make_coffee"]\n', "make_coffee"),
        ('[capabilities]\nallowed = ["delete_data"]\nblocked = ["delete_data"]\n', "both"),
        ('[capabilities]\nallowed = "delete_data"\n', "list"),
        ("[other]\n", "unknown table"),
    ):
        policy.write_text(text)
        r = keel("ai", "status")
        assert r.code == 1, text
        assert r.err.startswith("Problem: the AI policy") and words in r.err, r.err
        assert "Fix:" in r.err and "Traceback" not in r.err


def test_allow_and_deny_edit_the_policy_in_place_keeping_comments(
    keel: Keel, project: Path
) -> None:
    keel("ai", "init")
    policy = project / ".keel" / "ai.toml"
    policy.write_text(policy.read_text() + "# a note the team wrote\n")
    r = keel("ai", "deny", "create_resource")
    assert r.code == 0, r.err
    assert '-    "create_resource",' in r.out and '+    "create_resource",' in r.out
    assert "--- a/.keel/ai.toml" in r.out
    text = policy.read_text()
    assert "# a note the team wrote" in text and "# What an AI coding assistant" in text
    assert "# change this policy" in text  # comments of the other entries kept
    status = json.loads(keel("ai", "status", "--json").out)["capabilities"]
    assert status["create_resource"]["bucket"] == "blocked"
    assert keel("ai", "allow", "delete_data", "--with-approval").code == 0
    assert keel("ai", "allow", "edit_templates").code == 0
    status = json.loads(keel("ai", "status", "--json").out)["capabilities"]
    assert status["delete_data"] == {**status["delete_data"], "bucket": "needs_approval",
                                     "approvals_needed": 2}  # fmt: skip
    assert status["edit_templates"]["bucket"] == "allowed"
    same = keel("ai", "allow", "edit_templates")
    assert same.code == 0 and "nothing changed" in same.out
    bad = keel("ai", "allow", "everything")
    assert bad.code == 2 and "unknown capability" in bad.err
    log = [json.loads(line) for line in (project / ".keel/ai/log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log] == ["init", "policy_deny", "policy_allow", "policy_allow"]


def test_allow_without_a_policy_file_says_to_init(keel: Keel) -> None:
    r = keel("ai", "allow", "delete_data")
    assert r.code == 1 and "keel ai init" in r.err


def test_an_allowed_change_applies_without_approval_and_writes_exactly_the_staged_files(
    keel: Keel, project: Path, tmp_path: Path
) -> None:
    source = "from app.admin import Resource\n\nNOTES = Resource('notes')\n"
    r = keel("ai", "propose", "create_resource", "--title", "Add notes",
             "--file", f"notes.py={stage(tmp_path, 'a', source)}",
             "--file", "docs/notes.md=" + stage(tmp_path, "b", "# Notes\n"))  # fmt: skip
    assert r.code == 0, r.err
    pid = proposal_id(r.out)
    assert not (project / "notes.py").exists()  # staged, not written
    review = keel("ai", "review", pid)
    assert "+++ b/notes.py" in review.out and "+NOTES = Resource('notes')" in review.out
    before = {p.relative_to(project) for p in project.rglob("*") if ".keel" not in p.parts}
    r = keel("ai", "apply", pid)
    assert r.code == 0, r.err
    after = {p.relative_to(project) for p in project.rglob("*") if ".keel" not in p.parts}
    assert after - before == {Path("notes.py"), Path("docs"), Path("docs/notes.md")}
    assert (project / "notes.py").read_text() == source
    again = keel("ai", "apply", pid)
    assert again.code == 1 and "already applied" in again.err
    listed = json.loads(keel("ai", "list", "--json").out)
    assert [(p["id"], p["status"]) for p in listed] == [(pid, "applied")]


def test_a_blocked_capability_is_refused_when_proposed(
    keel: Keel, project: Path, tmp_path: Path
) -> None:
    src = stage(tmp_path, "x", "x = 1\n")
    r = keel("ai", "propose", "delete_data", "--title", "Drop it", "--file", f"x.py={src}")
    assert r.code == 1 and "delete_data is blocked" in r.err and "Traceback" not in r.err
    # Paths imply capabilities whatever the proposal claims: keel.toml is security settings.
    r = keel("ai", "propose", "create_resource", "--title", "t", "--file", f"keel.toml={src}")
    assert r.code == 1 and "security_settings is blocked" in r.err
    assert not list((project / ".keel/ai/proposals").glob("*.json"))
    events = [
        json.loads(x)["event"] for x in (project / ".keel/ai/log.jsonl").read_text().splitlines()
    ]
    assert events == ["refused", "refused"]


def test_editing_an_existing_file_needs_approval_even_under_an_allowed_capability(
    keel: Keel, tmp_path: Path
) -> None:
    src = stage(tmp_path, "r", "REGISTRY = ()\n")
    r = keel("ai", "propose", "create_resource", "--title", "t", "--file", f"resources.py={src}",
             "--json")  # fmt: skip
    data = json.loads(r.out)
    assert data["capabilities"] == ["create_resource", "edit_existing_code"]
    assert data["bucket"] == "needs_approval" and data["approvals_needed"] == 1
    r = keel("ai", "apply", data["id"])
    assert r.code == 2 and "--as EMAIL" in r.err


def test_path_escapes_are_refused(keel: Keel, project: Path, tmp_path: Path) -> None:
    src = stage(tmp_path, "x", "x = 1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "linked").symlink_to(outside)
    (project / "link.py").symlink_to(outside / "target.py")
    for path, why in (
        ("../escape.py", "'..'"),
        ("sub/../../escape.py", "'..'"),
        (str(tmp_path / "abs.py"), "absolute"),
        ("linked/escape.py", "symbolic link"),
        ("link.py", "symbolic link"),
        (".keel/ai.toml", "changes only through"),
        (".git/hooks/pre-commit", "changes only through"),
    ):
        r = keel("ai", "propose", "create_resource", "--title", "t", "--file", f"{path}={src}")
        assert r.code == 2, (path, r.out)
        assert "is not allowed" in r.err and why in r.err, (path, r.err)
    assert list(outside.iterdir()) == []


def test_a_symlink_made_after_staging_cannot_redirect_the_write(
    keel: Keel, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    src = stage(tmp_path, "x", "x = 1\n")
    pid = proposal_id(keel("ai", "propose", "create_resource", "--title", "t",
                           "--file", f"extra/x.py={src}").out)  # fmt: skip
    (project / "extra").symlink_to(outside)  # made after the proposal was staged
    r = keel("ai", "apply", pid)
    assert r.code == 2 and "symbolic link" in r.err
    assert list(outside.iterdir()) == []


def test_content_that_looks_like_a_secret_is_refused_with_line_and_class(
    keel: Keel, project: Path, tmp_path: Path
) -> None:
    text = "x = 1\nDSN = 'postgresql://app:hunter2hunter2@db/app'\n"
    r = keel("ai", "propose", "create_resource", "--title", "t",
             "--file", f"x.py={stage(tmp_path, 's', text)}")  # fmt: skip
    assert r.code == 1
    assert "x.py line 2" in r.err and "password in a connection URL" in r.err
    assert "hunter2" not in r.err
    assert not (project / ".keel/ai/proposals").exists() or not any(
        (project / ".keel/ai/proposals").iterdir()
    )


async def test_the_two_approver_lifecycle_with_real_users(
    keel_db: Keel, project: Path, tmp_path: Path, people: dict[str, str], database_url: str
) -> None:
    keel = keel_db
    migration = "ALTER TABLE customers ADD COLUMN notes text;\n"
    (project / "migrations" / "0001_customers.sql").write_text("CREATE TABLE customers();\n")
    r = keel("ai", "propose", "modify_table", "--title", "Notes on customers",
             "--file", f"migrations/0001_customers.sql={stage(tmp_path, 'm', migration)}")  # fmt: skip
    assert r.code == 0, r.err
    pid = proposal_id(r.out)
    assert "2 approval(s)" in r.out

    early = keel(
        "ai", "apply", pid, "--as", people["admin1"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert early.code == 1 and "0 of 2 approvals" in early.err

    ok = keel(
        "ai", "approve", pid, "--as", people["admin1"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert ok.code == 0, ok.err
    assert "1 of 2" in ok.out
    assert f"{pid}  1/2  Notes on customers" in keel("ai", "status").out
    twice = keel("ai", "approve", pid, "--as", people["admin1"], "--password-stdin",
                 input=PASSWORD + "\n")  # fmt: skip
    assert twice.code == 1 and "already approved" in twice.err

    for who, password in (("admin2", "wrong password"), ("staff", PASSWORD), ("gone", PASSWORD)):
        refused = keel("ai", "approve", pid, "--as", people[who], "--password-stdin",
                       input=password + "\n")  # fmt: skip
        assert refused.code == 1 and "cannot approve" in refused.err, who
    unknown = keel("ai", "approve", pid, "--as", "nobody@example.com", "--password-stdin",
                   input=PASSWORD + "\n")  # fmt: skip
    assert unknown.code == 1 and "cannot approve" in unknown.err
    no_password = keel("ai", "approve", pid, "--as", people["dev"])
    assert no_password.code == 2 and "password-stdin" in no_password.err

    early2 = keel(
        "ai", "apply", pid, "--as", people["dev"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert early2.code == 1 and "1 of 2 approvals" in early2.err
    assert (
        project / "migrations" / "0001_customers.sql"
    ).read_text() == "CREATE TABLE customers();\n"

    ok = keel(
        "ai", "approve", pid, "--as", people["dev"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert ok.code == 0 and "2 of 2" in ok.out
    applied = keel("ai", "apply", pid, "--as", people["admin2"], "--password-stdin",
                   input=PASSWORD + "\n")  # fmt: skip
    assert applied.code == 0, applied.err
    assert (project / "migrations" / "0001_customers.sql").read_text() == migration

    rows = audit_rows(database_url)
    assert [(t, a, target) for t, a, target, _ in rows] == [
        ("ai_proposal_approved", people["admin1"], pid),
        ("ai_proposal_approved", people["dev"], pid),
        ("ai_proposal_applied", people["admin2"], pid),
    ]
    assert rows[2][3]["files"] == ["migrations/0001_customers.sql"]

    events = [json.loads(x) for x in (project / ".keel/ai/log.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("by")) for e in events] == [
        ("proposed", None), ("approved", people["admin1"]), ("approved", people["dev"]),
        ("applied", people["admin2"]),
    ]  # fmt: skip
    shown = keel("ai", "log", "--proposal", pid)
    assert shown.code == 0 and shown.out.count(pid) == 4


async def test_reject_is_final_and_mirrored(
    keel_db: Keel, tmp_path: Path, people: dict[str, str], database_url: str
) -> None:
    keel = keel_db
    pid = proposal_id(keel("ai", "propose", "add_dependency", "--title", "Add requests",
                           "--file", "requirements.txt=" + stage(tmp_path, "r", "requests\n")).out)  # fmt: skip
    r = keel("ai", "reject", pid, "--reason", "not needed", "--as", people["admin1"],
             "--password-stdin", input=PASSWORD + "\n")  # fmt: skip
    assert r.code == 0, r.err
    late = keel(
        "ai", "approve", pid, "--as", people["admin2"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert late.code == 1 and "is rejected" in late.err
    applied = keel(
        "ai", "apply", pid, "--as", people["admin2"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert applied.code == 1
    rows = audit_rows(database_url)
    assert [(t, m.get("reason")) for t, _, _, m in rows] == [("ai_proposal_rejected", "not needed")]


async def test_a_policy_edited_after_proposing_does_not_change_what_the_proposal_needs(
    keel_db: Keel, project: Path, tmp_path: Path, people: dict[str, str]
) -> None:
    keel = keel_db
    keel("ai", "init")
    src = stage(tmp_path, "t", "<p>hi</p>\n")
    pid = proposal_id(keel("ai", "propose", "edit_templates", "--title", "Footer",
                           "--file", f"templates/footer.html={src}").out)  # fmt: skip
    # After the proposal: the team now wants two approvers for templates, then blocks them.
    policy = project / ".keel" / "ai.toml"
    policy.write_text(
        policy.read_text().replace("two_approvers = [", 'two_approvers = [\n    "edit_templates",')
    )
    assert json.loads(keel("ai", "status", "--json").out)["capabilities"]["edit_templates"][
        "approvals_needed"] == 2  # fmt: skip
    assert keel("ai", "deny", "edit_templates").code == 0
    ok = keel(
        "ai", "approve", pid, "--as", people["admin1"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert ok.code == 0 and "1 of 1" in ok.out
    r = keel(
        "ai", "apply", pid, "--as", people["admin1"], "--password-stdin", input=PASSWORD + "\n"
    )
    assert r.code == 0, r.err
    assert (project / "templates" / "footer.html").read_text() == "<p>hi</p>\n"
    # A new proposal of the same capability now meets the new policy.
    again = keel(
        "ai", "propose", "edit_templates", "--title", "t", "--file", f"templates/x.html={src}"
    )
    assert again.code == 1 and "blocked" in again.err


def test_two_processes_appending_to_the_log_leave_every_line_intact(project: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from app.governance import log\n"
        "root = Path(sys.argv[1]); tag = sys.argv[2]\n"
        "for i in range(400):\n"
        "    log.append(root, 'test', tag=tag, i=i, pad='x' * 3000)\n"
    )
    env = keel_env(site=False)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(project), tag], env=env, cwd=REPO)
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = (project / ".keel/ai/log.jsonl").read_text().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]  # every line parses: none interleaved
    for tag in ("a", "b"):
        assert [r["i"] for r in records if r["tag"] == tag] == list(range(400))
    assert os.path.getsize(project / ".keel/ai/log.jsonl") == sum(len(x) + 1 for x in lines)


def test_bad_input_is_explained_never_a_traceback(keel: Keel, tmp_path: Path) -> None:
    for args, code in (
        (("ai", "review", "nope"), 2),
        (("ai", "review", "20990101-abcdef"), 1),
        (("ai", "propose", "create_resource", "--title", "t", "--file", "x.py"), 2),
        (
            (
                "ai",
                "propose",
                "create_resource",
                "--title",
                "t",
                "--file",
                f"x.py={tmp_path}/missing",
            ),
            2,
        ),
        (("ai", "propose", "create_resource", "--title", "t"), 2),
        (("ai", "propose", "teleport", "--title", "t", "--file", "x.py=/dev/null"), 2),
        (("ai", "approve", "20990101-abcdef"), 2),
    ):
        r = keel(*args)
        assert r.code == code, (args, r.err)
        assert r.err.startswith("Problem:") and "Traceback" not in r.err, (args, r.err)


def test_apply_refuses_to_overwrite_a_file_changed_since_staging(
    keel: Keel, project: Path, tmp_path: Path
) -> None:
    keel("ai", "init")
    keel("ai", "allow", "edit_existing_code")
    src = stage(tmp_path, "r", "REGISTRY = ()\n")
    pid = proposal_id(keel("ai", "propose", "edit_existing_code", "--title", "t",
                           "--file", f"resources.py={src}").out)  # fmt: skip
    (project / "resources.py").write_text("# edited by a person meanwhile\n")
    r = keel("ai", "apply", pid)
    assert r.code == 1 and "changed since proposal" in r.err
    assert (project / "resources.py").read_text() == "# edited by a person meanwhile\n"
