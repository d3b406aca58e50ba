"""Text contrast as the browser paints it (WCAG 2 ratios), measured in the live page."""

# Colours as Chromium computes them; the background is every ancestor's, composited.
HELPERS = """
    const parse = (css) => {
        const parts = css.match(/[\\d.]+/g).map(Number);
        // color-mix() computes to color(srgb r g b [/ a]), its channels from 0 to 1.
        const scale = css.startsWith("color(srgb") ? 255 : 1;
        const [r, g, b] = parts.slice(0, 3).map((v) => v * scale);
        return {r, g, b, a: parts.length > 3 ? parts[3] : 1};
    };
    const over = (top, bottom) => ({
        r: top.r * top.a + bottom.r * (1 - top.a),
        g: top.g * top.a + bottom.g * (1 - top.a),
        b: top.b * top.a + bottom.b * (1 - top.a),
        a: 1,
    });
    const behind = (element) => {
        const layers = [];
        for (let e = element; e; e = e.parentElement) {
            const colour = parse(getComputedStyle(e).backgroundColor);
            if (colour.a > 0) layers.push(colour);
            if (colour.a === 1) break;
        }
        return layers.reverse().reduce((base, layer) => over(layer, base),
                                       {r: 255, g: 255, b: 255, a: 1});
    };
    const luminance = ({r, g, b}) => {
        const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    };
    const ratio = (one, other) => {
        const [light, dark] = [luminance(one), luminance(other)].sort((x, y) => y - x);
        return (light + 0.05) / (dark + 0.05);
    };
    const contrast = (element, pseudo = null) => {
        const background = behind(element);
        const text = over(parse(getComputedStyle(element, pseudo).color), background);
        return {ratio: ratio(text, background), background: luminance(background)};
    };
"""

CONTRAST = f"""({{selector, pseudo}}) => {{
    {HELPERS}
    const element = document.querySelector(selector);
    return element ? contrast(element, pseudo) : null;
}}"""

# Every element on the page that shows text of its own; large text needs 3:1, the rest 4.5:1.
AUDIT = f"""() => {{
    {HELPERS}
    const failures = [];
    for (const element of document.querySelectorAll('body *')) {{
        const ownText = [...element.childNodes].some(
            (node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
        const box = element.getBoundingClientRect();
        if (!ownText || !box.width || !box.height || element.closest('.visually-hidden')) continue;
        if (!element.checkVisibility({{visibilityProperty: true}})) continue;
        const style = getComputedStyle(element);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight) >= 700);
        const {{ratio}} = contrast(element);
        if (ratio < (large ? 3 : 4.5)) {{
            const name = element.tagName.toLowerCase() + (element.className
                ? '.' + String(element.className).trim().split(/\\s+/).join('.') : '');
            failures.push(`${{name}} “${{element.textContent.trim().slice(0, 30)}}”: `
                          + ratio.toFixed(2));
        }}
    }}
    return failures;
}}"""


def contrast_of(page, selectors: dict[str, str]) -> dict[str, dict | None]:
    """{name: {"ratio", "background" (its luminance)}} for the first match of each selector."""
    return {
        name: page.evaluate(CONTRAST, {"selector": selector, "pseudo": None})
        for name, selector in selectors.items()
    }


def placeholder_contrast(page, selector: str) -> float:
    """The contrast of a field's placeholder text with what is behind the field."""
    return page.evaluate(CONTRAST, {"selector": selector, "pseudo": "::placeholder"})["ratio"]


def unreadable_text(page) -> list[str]:
    """The page's visible text whose contrast falls under WCAG AA, described."""
    return page.evaluate(AUDIT)


# Every field a person types in or picks from (its box: the message box's is the composer) must
# stand out from what is around it by 3:1 (WCAG 1.4.11), by its edge or by its fill.
FIELD_EDGES = f"""() => {{
    {HELPERS}
    const failures = [];
    const fields = document.querySelectorAll(
        'input:not([type=checkbox], [type=radio], [type=hidden], [type=file]), select, textarea');
    for (const field of fields) {{
        const box = field.closest('.composer') || field;
        if (field.disabled || !box.checkVisibility({{visibilityProperty: true}})) continue;
        if (field.closest('.visually-hidden')) continue;
        const around = behind(box.parentElement);
        const style = getComputedStyle(box);
        const edge = parseFloat(style.borderTopWidth) > 0
            ? over(parse(style.borderTopColor), around) : around;
        const best = Math.max(ratio(edge, around), ratio(behind(box), around));
        if (best < 3) {{
            const name = box.tagName.toLowerCase() + (box.id ? '#' + box.id : '')
                + (box.name ? `[name=${{box.name}}]` : '');
            failures.push(`${{name}}: ${{best.toFixed(2)}}`);
        }}
    }}
    return failures;
}}"""


def faint_field_edges(page) -> list[str]:
    """The page's visible fields whose edge and fill stand out from around them by under 3:1."""
    return page.evaluate(FIELD_EDGES)
