"""The demo site's declarations: a service desk over customers, bookings, technicians, properties
and skills (technicians ↔ skills through `technician_skills`, found in the catalog)."""

from app.admin import Action, BulkEdit, Inline, Resource, register

REGISTRY = register(
    Resource(
        "bookings",
        list_display=("id", "customer", "status", "amount", "scheduled_at"),
        list_filter=("status", "scheduled_at", "customer", "amount"),
        search_fields=("notes", "customer.email"),
        ordering=("-scheduled_at",),
        display_field="id",
        labels={"customer_id": "Customer", "scheduled_at": "Scheduled"},
        help_texts={"amount": "Total in euros, tax included."},
        formats={"amount": "money:EUR"},
        actions=(
            Action("confirm", "Set status to confirmed", {"status": "confirmed"}),
            Action("cancel", "Cancel", {"status": "cancelled"}, confirm=True),
        ),
        bulk_edit=BulkEdit(fields=("status", "amount", "scheduled_at"), reauth_above=100),
    ),
    Resource(
        "customers",
        list_display=("id", "name", "email", "city", "created_at"),
        list_filter=("created_at",),
        search_fields=("name", "email"),
        ordering=("name",),
        display_field="name",
        readonly_fields=("created_at",),
        natural_key=("email",),
        inlines=(Inline("bookings", "customer_id", ("id", "status", "amount", "scheduled_at")),),
    ),
    Resource(
        "technicians",
        list_display=("name", "email", "skill_level", "hourly_rate", "is_active", "hired_on"),
        list_filter=("skill_level", "is_active", "hired_on", "hourly_rate", "supervisor"),
        search_fields=("name", "email"),
        ordering=("name",),
        display_field="name",
        readonly_fields=("created_at", "updated_at"),
        formats={"hourly_rate": "money:EUR"},
        natural_key=("email",),
        fieldsets=(
            ("Contact", ("name", "email", "phone")),
            (
                "Work",
                (
                    "skill_level",
                    "hourly_rate",
                    "is_active",
                    "hired_on",
                    "shift_start",
                    "supervisor_id",
                ),
            ),
            ("Profile", ("profile", "bio")),
        ),
        inlines=(
            Inline(
                "properties",
                "technician_id",
                ("name", "kind", "last_inspected"),
                editable=True,
                fields=("name", "address", "kind", "last_inspected"),
            ),
        ),
        actions=(Action("deactivate", "Mark inactive", {"is_active": False}),),
        bulk_edit=BulkEdit(fields=("skill_level", "hourly_rate", "is_active"), reauth_above=50),
    ),
    Resource(
        "properties",
        list_display=("name", "kind", "technician", "units", "has_parking", "last_inspected"),
        list_filter=("kind", "has_parking", "last_inspected", "technician", "units"),
        search_fields=("name",),
        tsvector_field="search",
        ordering=("-created_at",),
        display_field="name",
        readonly_fields=("created_at", "updated_at"),
        labels={"floor_area_m2": "Floor area (m²)", "technician_id": "Technician"},
        widgets={"access_notes": "textarea"},
    ),
    Resource(
        "skills",
        list_display=("id", "name"),
        search_fields=("name",),
        ordering=("name",),
        display_field="name",
    ),
)
