"""The signed report as a PDF (ReportLab): what the referring site files in the patient's record.

ReportLab draws the PDF itself (no browser, no system libraries such as Pango/Cairo that
WeasyPrint needs), so every web and worker node renders the same report.
"""

import io
import logging
from html import escape
from pathlib import Path

from django.utils import timezone
from PIL import Image as PILImage, UnidentifiedImageError
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from reports.content import person_name

logger = logging.getLogger(__name__)

THUMBNAIL_PX = 360  # longest side of a thumbnail as embedded (about 150 dpi at 55 mm)
THUMBNAIL_MM = 55
INK = colors.HexColor("#1b2a38")
MUTED = colors.HexColor("#4a5561")
RULE = colors.HexColor("#c7ced6")
AMENDED = colors.HexColor("#9c1c1c")

# A TrueType font with more than Latin-1 (patients' names); ReportLab's own Vera as a fallback.
_FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
]


def _fonts():
    if "TDSans" in pdfmetrics.getRegisteredFontNames():
        return "TDSans", "TDSans-Bold"
    import reportlab

    vera = Path(reportlab.__file__).parent / "fonts"
    for regular, bold in [*_FONT_CANDIDATES, (str(vera / "Vera.ttf"), str(vera / "VeraBd.ttf"))]:
        if Path(regular).is_file() and Path(bold).is_file():
            pdfmetrics.registerFont(TTFont("TDSans", regular))
            pdfmetrics.registerFont(TTFont("TDSans-Bold", bold))
            pdfmetrics.registerFontFamily("TDSans", normal="TDSans", bold="TDSans-Bold")
            return "TDSans", "TDSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _styles():
    regular, bold = _fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("TDBody", parent=base["BodyText"], fontName=regular, fontSize=9, leading=12, textColor=INK)
    return {
        "body": body,
        "small": ParagraphStyle("TDSmall", parent=body, fontSize=7.5, leading=9.5, textColor=MUTED),
        "label": ParagraphStyle("TDLabel", parent=body, fontName=bold, fontSize=8, textColor=MUTED),
        "title": ParagraphStyle("TDTitle", parent=body, fontName=bold, fontSize=16, leading=20, spaceAfter=2),
        "h2": ParagraphStyle("TDH2", parent=body, fontName=bold, fontSize=11, leading=14, spaceBefore=8, spaceAfter=4),
        "diagnosis": ParagraphStyle("TDDiagnosis", parent=body, fontName=bold, fontSize=13, leading=17),
        "banner": ParagraphStyle(
            "TDBanner",
            parent=body,
            fontName=bold,
            fontSize=12,
            leading=16,
            textColor=colors.white,
            alignment=TA_CENTER,
        ),
        "caption": ParagraphStyle("TDCaption", parent=body, fontSize=7, leading=9, alignment=TA_CENTER),
    }


def _p(text, style):
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def _fields(rows, styles, widths=(38 * mm, None)):
    """A two-column table of label: value rows."""
    data = [
        [_p(label, styles["label"]), _p(value if value not in (None, "") else "—", styles["body"])]
        for label, value in rows
    ]
    table = Table(data, colWidths=list(widths), hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return table


def _grid(data, widths, styles, header=True):
    table = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1 if header else 0)
    commands = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f4")))
    table.setStyle(TableStyle(commands))
    return table


def _thumbnail(smear):
    """The smear image scaled down for the report (PNG bytes), or None when it cannot be read."""
    try:
        with smear.image.storage.open(smear.image.name, "rb") as handle:
            with PILImage.open(handle) as image:
                image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at a reduced size
                image = image.convert("RGB")
                image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
                return buffer.getvalue(), image.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        logger.warning("Report of case %s: image %s left out: %s", smear.case_id, smear.pk, exc)
        return None


def _thumbnails(content, styles):
    cells = []
    for smear in content.smears:
        name = smear.original_filename or f"Image {smear.pk}"
        caption = _p(f"{name} ({smear.width}×{smear.height} px)", styles["caption"])
        thumbnail = _thumbnail(smear)
        if thumbnail is None:
            cells.append([_p("Image not available", styles["small"]), caption])
            continue
        data, (width, height) = thumbnail
        scale = THUMBNAIL_MM * mm / max(width, height)
        cells.append([Image(io.BytesIO(data), width=width * scale, height=height * scale), caption])
    if not cells:
        return [_p("No images.", styles["body"])]
    per_row = 3
    rows = []
    for start in range(0, len(cells), per_row):
        chunk = cells[start : start + per_row]
        chunk += [["", ""]] * (per_row - len(chunk))
        rows.append([cell[0] for cell in chunk])
        rows.append([cell[1] for cell in chunk])
    table = Table(rows, colWidths=[(THUMBNAIL_MM + 4) * mm] * per_row, hAlign="LEFT")
    table.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    return [table]


def _when(value):
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M %Z}"


def _percent(value):
    return "—" if value is None else f"{value * 100:.1f} %"


def _ai_section(content, styles):
    ai = content.ai
    story = [_p("AI result (decision support)", styles["h2"])]
    if ai is None:
        story.append(_p("No AI result was available for this case when the report was issued.", styles["body"]))
        story.append(_p(content.decision_support, styles["small"]))
        return story
    story.append(
        _fields(
            [
                ("Model version", ai.model_version),
                ("AI suggestion", ai.label),
                ("Top probability", _percent(ai.top_probability)),
                ("Images analysed", f"{ai.analysed} (failed: {ai.failed}, not a blood smear: {ai.not_smear})"),
            ],
            styles,
        )
    )
    if ai.probabilities:
        rows = [[_p("Class", styles["label"]), _p("Mean probability", styles["label"])]]
        rows += [[_p(row.label, styles["body"]), _p(_percent(row.value), styles["body"])] for row in ai.probabilities]
        story += [Spacer(1, 3 * mm), KeepTogether(_grid(rows, [80 * mm, 40 * mm], styles))]
    if ai.images:
        rows = [
            [
                _p("Image", styles["label"]),
                _p("AI result", styles["label"]),
                _p("Top", styles["label"]),
                _p("Flags", styles["label"]),
            ]
        ]
        for image in ai.images:
            notes = list(image.flags)
            if not image.is_smear:
                notes.insert(0, "Not a blood smear: " + ("; ".join(image.smear_reasons) or "unlike a stained smear"))
            rows.append(
                [
                    _p(image.name, styles["body"]),
                    _p(image.label, styles["body"]),
                    _p(_percent(image.top_probability), styles["body"]),
                    _p("; ".join(notes) or "none", styles["body"]),
                ]
            )
        story += [Spacer(1, 3 * mm), KeepTogether(_grid(rows, [45 * mm, 40 * mm, 20 * mm, 70 * mm], styles))]
    warnings = list(ai.reasons)
    if warnings:
        story.append(Spacer(1, 2 * mm))
        story.append(_p("Look twice: " + " ".join(warnings), styles["body"]))
    story += [Spacer(1, 2 * mm), _p(content.decision_support, styles["small"])]
    return story


def _diagnosis_section(content, styles):
    review = content.review
    method = review.get_signature_method_display().lower() if review.signature_method else "signed in"
    story = [_p("Pathologist's diagnosis", styles["h2"]), _p(content.diagnosis_label, styles["diagnosis"])]
    rows = [
        ("Comment", review.comment),
        ("Signed by", content.signer_name),
        ("Signed at", _when(review.signed_at)),
        ("Signature", f"Electronic signature ({method})"),
    ]
    story.append(_fields(rows, styles))
    return story


def _amendment_section(content, styles):
    review = content.review
    story = [
        _p("Amendment", styles["h2"]),
        _fields(
            [
                ("What changed", content.change),
                ("Previous diagnosis", content.previous_label),
                ("New diagnosis", content.diagnosis_label),
                ("Reason", review.reason),
            ],
            styles,
        ),
    ]
    rows = [[_p(h, styles["label"]) for h in ("Version", "Diagnosis", "Signed by", "Signed at", "Reason")]]
    for number, earlier in enumerate(content.reviews, start=1):
        rows.append(
            [
                _p(str(number), styles["body"]),
                _p(earlier.get_diagnosis_display(), styles["body"]),
                _p(person_name(earlier.signed_by), styles["body"]),
                _p(_when(earlier.signed_at), styles["body"]),
                _p(earlier.reason or "—", styles["body"]),
            ]
        )
    story += [Spacer(1, 3 * mm), _p("Versions of this report", styles["label"])]
    story.append(_grid(rows, [15 * mm, 45 * mm, 35 * mm, 30 * mm, 50 * mm], styles))
    return story


def render_pdf(content):
    """The report of ``content`` (reports.content.ReportContent) as PDF bytes."""
    styles = _styles()
    case = content.case
    patient = case.patient
    buffer = io.BytesIO()
    title = f"Telediag report {case.reference} v{content.number}" + (" (AMENDED)" if content.is_amendment else "")
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author=content.signer_name,
        subject=f"Haematology telediagnosis report, case {case.reference}",
        creator="Telediag",
    )
    story = [_p("Haematology telediagnosis report", styles["title"])]
    if content.is_amendment:
        banner = Table([[_p(f"AMENDED REPORT — version {content.number}", styles["banner"])]], colWidths=["100%"])
        banner.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), AMENDED)]))
        story += [banner, Spacer(1, 2 * mm)]
    story.append(
        _fields(
            [
                ("Case", case.reference),
                ("Report version", f"{content.number} ({'AMENDED' if content.is_amendment else 'final'})"),
                ("Referring site", case.site.name),
                ("Reading laboratory", case.laboratory.name),
            ],
            styles,
        )
    )
    story += [
        _p("Patient", styles["h2"]),
        _fields(
            [
                ("Name", patient.full_name),
                ("Medical record number", patient.mrn),
                ("Date of birth", f"{patient.date_of_birth:%Y-%m-%d}"),
                ("Sex", patient.get_sex_display()),
            ],
            styles,
        ),
        _p("Request", styles["h2"]),
        _fields(
            [
                ("Requested by", person_name(case.submitted_by)),
                ("Submitted", _when(case.created_at)),
                ("Priority", case.get_priority_display()),
                ("Clinical notes", case.clinical_notes),
            ],
            styles,
        ),
    ]
    story += [KeepTogether(_diagnosis_section(content, styles))]
    if content.is_amendment:
        story += _amendment_section(content, styles)
    story += _ai_section(content, styles)
    story += [_p("Specimen images", styles["h2"]), *_thumbnails(content, styles)]

    regular = styles["small"].fontName

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.setFillColor(MUTED)
        text = (
            f"Telediag · {case.reference} · report version {content.number}"
            f"{' (AMENDED)' if content.is_amendment else ''} · page {doc.page} · "
            "AI results are decision support; the diagnosis is the signing pathologist's."
        )
        canvas.drawString(16 * mm, 10 * mm, text)
        canvas.restoreState()

    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
