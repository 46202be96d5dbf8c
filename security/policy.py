"""Who must use a second factor: everyone who signs diagnoses or manages people or the platform."""


def requires_second_factor(user):
    """Pathologists, lab admins and superusers must; clinicians may (they enrol when they wish)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_superuser or user.is_pathologist or user.is_lab_admin)
