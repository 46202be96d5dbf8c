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


_FOCUS_RING = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  // Focus inside a control's browser-made parts (a date input's calendar button) leaves the host
  // unfocused: the browser draws that part's ring itself.
  if (!el.matches(':focus')) { return null; }
  const rgb = (text) => { const m = text.match(/rgba?\\(([^)]+)\\)/); if (!m) { return null; }
    const p = m[1].split(',').map(s => parseFloat(s)); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  let behind = null;
  for (let node = el.parentElement; node; node = node.parentElement) {
    const bg = rgb(getComputedStyle(node).backgroundColor);
    if (bg && bg.a === 1) { behind = bg; break; }
  }
  behind = behind || {r: 255, g: 255, b: 255, a: 1};
  const style = getComputedStyle(el);
  const ring = rgb(style.outlineColor);
  const width = parseFloat(style.outlineWidth) || 0;
  const [hi, lo] = [lum(ring || behind), lum(behind)].sort((a, b) => b - a);
  const label = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
    (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 30) + '"';
  return {label, style: style.outlineStyle, width, contrast: (hi + 0.05) / (lo + 0.05)};
}"""


def focus_rings(page, presses=80):
    """Tab through the page: each focused control's outline (style, width, contrast against what
    surrounds it). Stops when focus comes back to the first control."""
    rings, first = [], None
    for _ in range(presses):
        page.keyboard.press("Tab")
        ring = page.evaluate(_FOCUS_RING)
        if ring is None:
            continue
        if ring["label"] == first:
            break
        first = first or ring["label"]
        rings.append(ring)
    return rings


def weak_rings(rings, minimum=3.0):
    return [r for r in rings if r["style"] == "none" or r["width"] < 2 or r["contrast"] < minimum]
