"""The declaration facade site authors import: `from app.admin import Resource, Action, Inline, register`."""

from app.admin.resources import Action, Inline, Registry, Resource, register

__all__ = ["Action", "Inline", "Registry", "Resource", "register"]
