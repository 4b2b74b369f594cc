"""The declaration facade site authors import: `from app.admin import Resource, Action, Inline, …`."""

from app.admin.joins import ManyToMany
from app.admin.resources import Action, BulkEdit, Inline, Registry, Resource, register

__all__ = ["Action", "BulkEdit", "Inline", "ManyToMany", "Registry", "Resource", "register"]
