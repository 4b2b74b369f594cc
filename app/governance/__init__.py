"""Offline governance of a site project: what an AI assistant may do (`keel ai`), and why the
project is the way it is (`keel memory`). Files under `.keel/`; the running server never reads them."""
