"""Offline governance of a site project: what an AI assistant may do (`keel ai`), and why the
project is the way it is (`keel memory`). Files under `.keel/`; the running server never reads them."""

# Shared by the services and the CLI (which must stay quick to import for `keel --help`).
KINDS = ("decision", "rejected", "assumption", "intent", "onboarding", "history", "open-tension")
REDACTION_CLASSES = (
    "password", "token", "mfa_secret", "backup_code", "pii", "credential", "operational",
)  # fmt: skip
