"""Accessibility measurements in the browser: axe-core's WCAG 2.1 A/AA rules and sideways overflow.

axe-core is a test asset (tests/assets/axe-core-*/, MPL-2.0, from the npm registry): it is
evaluated in the page through the DevTools protocol, which the page's Content-Security-Policy does
not govern, so the portal serves nothing extra and keeps its strict policy.
"""

from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_JS = Path(__file__).resolve().parent.parent / "assets" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("critical", "serious")
WIDTHS = (320, 768, 1366, 1920)

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
  }));
}"""


def axe_violations(page):
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now: [{id, impact, help, nodes}]."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    return page.evaluate(_RUN, WCAG_TAGS)


def blocking(violations):
    return [v for v in violations if v["impact"] in BLOCKING]


def describe(label, violations):
    lines = []
    for v in violations:
        lines.append(f"{label}: [{v['impact']}] {v['id']} — {v['help']}")
        for node in v["nodes"][:6]:
            lines.append(f"    {node['target']}: {node['summary'].splitlines()[-1].strip() if node['summary'] else ''}")
    return lines


def overflow_at(page, widths=WIDTHS):
    """Widths (px) at which the page scrolls sideways: {width: (scrollWidth, innerWidth, widest)}."""
    found = {}
    original = page.viewport_size
    for width in widths:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)  # one layout after the resize
        scroll, inner, widest = page.evaluate(
            """() => {
              const inner = window.innerWidth;
              let widest = '';
              if (document.documentElement.scrollWidth > inner) {
                for (const el of document.querySelectorAll('body *')) {
                  const r = el.getBoundingClientRect();
                  if (r.right > inner + 1 && r.width > 0) {
                    widest = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
                      (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') +
                      ' right=' + Math.round(r.right);
                    break;
                  }
                }
              }
              return [document.documentElement.scrollWidth, inner, widest];
            }"""
        )
        if scroll > inner:
            found[width] = (scroll, inner, widest)
    page.set_viewport_size(original)
    return found
