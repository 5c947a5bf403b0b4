"""The one check that a matplotlib figure's texts read at its saved size, for the figure tests."""
from __future__ import annotations

from fcos_lib.viz import TEXT_PX, text_height

CAP = text_height(1000) / 1000      # DejaVu Sans (matplotlib's default): capitals / font size


def assert_texts_readable(fig, texts, where: str = "") -> None:
    """Each visible text of ``texts`` has capitals TEXT_PX pixels high or more at the figure's
    dpi, and no two of them overlap (drawn boxes)."""
    texts = [t for t in texts if t.get_visible() and t.get_text()]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    said = f"{where}: " if where else ""
    for i, t in enumerate(texts):
        height = t.get_fontsize() * fig.dpi / 72 * CAP
        assert height >= TEXT_PX, f"{said}{t.get_text()!r} is {height:.1f} px high"
        for u, box in zip(texts[i + 1:], boxes[i + 1:]):
            assert not boxes[i].overlaps(box), f"{said}{t.get_text()!r} on {u.get_text()!r}"
