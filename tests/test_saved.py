"""fcos_lib.saved: the pieces a notebook saves import on their own in the next one."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fcos_lib.saved import FILE_NAME, load_pieces, save_pieces

# A notebook's cells, as a script: its own helper, modules under short names, a comprehension.
NOTEBOOK = '''
import math
import torch
import torch.nn.functional as F
from torch import Tensor
from fcos_lib.saved import save_pieces

SQUARE = 2

def area(x0, y0, x1, y1):
    return (x1 - x0) * (y1 - y0) ** (SQUARE - 1)

def assign(levels, boxes, size_ranges):
    owner = []
    for points, (lo, hi) in zip(levels, size_ranges):
        for x, y in points.tolist():
            best, best_area = -1, math.inf
            for m, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
                l, t, r, b = x - x0, y - y0, x1 - x, y1 - y
                if min(l, t, r, b) > 0 and lo < max(l, t, r, b) < hi and \\
                        area(x0, y0, x1, y1) < best_area:
                    best, best_area = m, area(x0, y0, x1, y1)
            owner.append(best)
    return torch.tensor(owner, dtype=torch.long)

def my_focal_loss(logits: Tensor, labels, alpha=0.25, gamma=2.0):
    target = torch.zeros_like(logits)
    positive = labels >= 0
    target[positive, labels[positive]] = 1.0
    p = torch.sigmoid(logits)
    p_t = torch.where(target == 1, p, 1 - p)
    alpha_t = torch.where(target == 1, alpha, 1 - alpha)
    terms = [F.binary_cross_entropy_with_logits(logits, target, reduction="none")]
    return (alpha_t * (1 - p_t) ** gamma * terms[0]).sum()

print(save_pieces(FOLDER, assign=assign, focal_loss=my_focal_loss))
'''


def test_pieces_saved_by_one_notebook_pass_their_checks_in_the_next(tmp_path, capsys):
    from fcos_lib.checks import check_assign, check_focal_loss

    script = tmp_path / "notebook05.py"
    script.write_text(NOTEBOOK.replace("FOLDER", repr(str(tmp_path / "runs"))))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    saved = (tmp_path / "runs" / FILE_NAME).read_text()
    assert "import torch.nn.functional as F" in saved and "def area(" in saved
    assert "SQUARE = 2" in saved
    assert "focal_loss = my_focal_loss" in saved
    pieces = load_pieces(tmp_path / "runs")
    assert {"assign", "focal_loss", "area", "my_focal_loss"} <= set(pieces)
    assert check_assign(pieces["assign"]) and check_focal_loss(pieces["focal_loss"])
    capsys.readouterr()


def test_a_library_function_is_imported_not_copied(tmp_path):
    from fcos_lib.losses import focal_loss_plain

    save_pieces(tmp_path, focal_loss=focal_loss_plain)
    text = (tmp_path / FILE_NAME).read_text()
    assert "from fcos_lib.losses import focal_loss_plain" in text and "def " not in text
    assert load_pieces(tmp_path)["focal_loss_plain"] is focal_loss_plain


def test_a_second_save_replaces_the_first(tmp_path):
    def first():
        return 1

    def second():
        return 2

    save_pieces(tmp_path, piece=first)
    save_pieces(tmp_path, piece=second)
    assert load_pieces(tmp_path)["piece"]() == 2
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]        # no temporary left


def test_no_saved_pieces_says_what_to_run(tmp_path, capsys):
    assert load_pieces(tmp_path) == {}
    assert "run the last cell of notebook 05" in capsys.readouterr().out


@pytest.mark.parametrize("bad, says", [(lambda x: x, "not a function written with def"),
                                       (len, "not a function written with def")])
def test_what_cannot_be_saved_is_named(tmp_path, bad, says):
    with pytest.raises(ValueError, match=says):
        save_pieces(tmp_path, piece=bad)
    with pytest.raises(ValueError, match="got no function"):
        save_pieces(tmp_path)
    assert not (tmp_path / FILE_NAME).exists()


def test_a_function_without_source_is_named(tmp_path):
    namespace: dict = {}
    exec(textwrap.dedent("def made(): return 1"), namespace)
    with pytest.raises(ValueError, match="cannot read the source of made"):
        save_pieces(tmp_path, piece=namespace["made"])
