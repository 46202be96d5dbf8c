from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models


class Organisation(models.Model):
    """A referring site, a reading laboratory, or both."""

    class Kind(models.TextChoices):
        REFERRING = "referring", "Referring site (clinic or hospital)"
        READING = "reading", "Reading laboratory"
        BOTH = "both", "Referring site and reading laboratory"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    laboratories = models.ManyToManyField(
        "self",
        through="ReferralLink",
        through_fields=("site", "laboratory"),
        symmetrical=False,
        related_name="referring_sites",
        blank=True,
        help_text="Reading laboratories this site sends its cases to.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_referring(self):
        return self.kind in (self.Kind.REFERRING, self.Kind.BOTH)

    @property
    def is_reading(self):
        return self.kind in (self.Kind.READING, self.Kind.BOTH)


class ReferralLink(models.Model):
    """A referring site sends cases to a reading laboratory. Set by a superuser."""

    site = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="referral_links")
    laboratory = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="incoming_referral_links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "laboratory"], name="unique_referral_link")]
        ordering = ["site__name", "laboratory__name"]

    def __str__(self):
        return f"{self.site} → {self.laboratory}"

    def clean(self):
        if self.site_id and not self.site.is_referring:
            raise ValidationError({"site": f"{self.site} is not a referring site."})
        if self.laboratory_id and not self.laboratory.is_reading:
            raise ValidationError({"laboratory": f"{self.laboratory} is not a reading laboratory."})


class User(AbstractUser):
    class Role(models.TextChoices):
        CLINICIAN = "clinician", "Clinician"
        PATHOLOGIST = "pathologist", "Pathologist"
        LAB_ADMIN = "lab_admin", "Lab admin"

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)

    def clean(self):
        super().clean()
        if not self.is_superuser and (self.organisation_id is None or not self.role):
            raise ValidationError("Every user except a superuser belongs to an organisation and has a role.")

    def __str__(self):
        full = self.get_full_name()
        return full or self.username

    @property
    def is_clinician(self):
        return self.role == self.Role.CLINICIAN and self.organisation_id is not None

    @property
    def is_pathologist(self):
        return self.role == self.Role.PATHOLOGIST and self.organisation_id is not None

    @property
    def is_lab_admin(self):
        return self.role == self.Role.LAB_ADMIN and self.organisation_id is not None
