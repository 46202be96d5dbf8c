from django import template

from notifications.services import unread_count

register = template.Library()


@register.simple_tag
def unread_notification_count(user):
    """Unread notices of ``user`` (0 when signed out): the navbar badge."""
    return unread_count(user)
