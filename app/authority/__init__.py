"""The authority layer: users, roles, groups, permissions, sessions, login, recovery, re-auth."""
