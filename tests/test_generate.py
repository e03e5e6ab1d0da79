"""vae.generate: every file it writes is named in what it prints and in its --help."""

from __future__ import annotations

import pytest
from PIL import Image

from vae.generate import main


def test_generate_names_both_files_it_writes(tiny_run, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    main([f"run={tiny_run}", "n=4", "per_row=2", f"out={out}"])
    printed = capsys.readouterr().out
    raw = tmp_path / "sheet_raw.png"
    assert out.is_file() and raw.is_file()
    assert str(out) in printed and str(raw) in printed and "not upscaled" in printed
    # The raw grid is the images at their own size: 2 per row, 28 px + 2 px padding each.
    assert Image.open(raw).size == (2 * 30 + 2, 2 * 30 + 2)
    assert Image.open(out).size[0] > Image.open(raw).size[0]  # the titled sheet is drawn larger


def test_generate_help_names_the_raw_grid(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "_raw.png" in capsys.readouterr().out


def test_a_sheet_too_large_for_memory_is_refused_with_its_estimate_writing_nothing(tiny_run, tmp_path):
    out = tmp_path / "huge.png"
    with pytest.raises(SystemExit, match=r"n must be at most 228261 for one sheet \(got 100000000: about 940.8 GB"):
        main([f"run={tiny_run}", "n=100000000", f"out={out}"])
    assert not out.exists()
