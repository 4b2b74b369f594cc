"""The company's own resources (the demo: a service desk) and their migrations."""
