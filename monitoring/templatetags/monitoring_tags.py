from django import template

register = template.Library()


@register.filter
def percent(value, digits=1):
    """0.9423 → "94.2 %"; None → "—" (nothing to measure yet)."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f} %"
