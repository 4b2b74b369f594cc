-- A new audit event type: the second-factor policy enforced at sign-in (a user who must set
-- up two-step sign-in is sent to do so, or refused once the grace period is over). The list
-- is the closed registry of app/audit_events.py; existing rows all satisfy the new one.
ALTER TABLE keel_audit DROP CONSTRAINT keel_audit_event_type_check;
ALTER TABLE keel_audit ADD CONSTRAINT keel_audit_event_type_check CHECK (event_type IN (
    'create', 'update', 'delete', 'bulk_action',
    'user_created', 'user_updated', 'user_deleted', 'role_changed',
    'group_created', 'group_updated', 'group_deleted',
    'permission_granted', 'permission_revoked',
    'login_succeeded', 'login_failed', 'account_locked', 'account_unlocked',
    'session_logout', 'sessions_revoked_self', 'sessions_revoked_by_other',
    'password_changed_self', 'password_reset_self_request', 'password_reset_self_consume',
    'password_reset_by_other', 'forced_password_change_completed',
    'reauth_succeeded', 'mfa_enabled', 'mfa_disabled', 'mfa_reset_by_other',
    'mfa_code_consumed', 'backup_codes_regenerated', 'mfa_policy_enforced',
    'emergency_recovery', 'export_downloaded', 'import_applied', 'settings_changed',
    'ai_proposal_approved', 'ai_proposal_rejected', 'ai_proposal_applied',
    'memory_redacted',
    'api_token_created', 'api_token_revoked'
));
