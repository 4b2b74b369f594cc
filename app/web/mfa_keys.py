"""Application keys of the second factor, shared by the sign-in pages and the middleware.

Their own module, not `keys.py`: `keys.py` is imported by the mail worker, which the sign-in
service imports, so the authority types here would make an import cycle there.
"""

from __future__ import annotations

from aiohttp import web

from app.authority.login import SecondFactor
from app.authority.mfa import KeyRing, Policy

# The policy always; the key ring and the sign-in settings only when the feature is on.
MFA_POLICY = web.AppKey("mfa_policy", Policy)
MFA_RING = web.AppKey("mfa_ring", KeyRing)
MFA_SIGN_IN = web.AppKey("mfa_sign_in", SecondFactor)
