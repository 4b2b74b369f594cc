"""The demo: a service desk site (`site/`, a project like the ones `keel new` writes) and its data."""
