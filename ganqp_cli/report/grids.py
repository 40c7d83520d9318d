"""Sample grids embedded in the page as data: URIs: for each run the grid nearest its best
FID, the last one, and a strip of grids over training (smaller). A grid still being written
(a truncated PNG) is left out and said so, not an error."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ganqp_cli.report import stats
from ganqp_cli.report.runs import Run


@dataclass
class Shown:
    it: int
    uri: str | None     # None: the file could not be read
    note: str = ""
    width: int = 0      # the width to show it at: small grids enlarged by a whole factor


def data_uri(path: Path, max_side: int, jpeg: bool = False) -> tuple[str, int] | None:
    """(the PNG at `path` as a data: URI, the width to show it at), scaled down (area
    averaging) so that its longer side is at most `max_side`, or its own bytes when it is
    already that small; a small grid is shown enlarged by the largest whole factor that
    keeps it within `max_side` (pixels stay sharp). `jpeg`: re-encoded as JPEG (a third of
    the bytes of a noisy grid's PNG: what keeps a report of hundreds of runs light)."""
    try:
        raw, kind = path.read_bytes(), "png"
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            if max(im.size) > max_side or jpeg:
                scale = min(1.0, max_side / max(im.size))
                size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
                im = im.convert("L" if im.mode in ("L", "LA", "I", "1") else "RGB")
                im = im.resize(size, Image.Resampling.BOX) if size != im.size else im
                buf = io.BytesIO()
                if jpeg:
                    im.save(buf, "JPEG", quality=85)
                    kind = "jpeg"
                else:
                    im.save(buf, "PNG", compress_level=9)
                raw = buf.getvalue()
            width = im.width * max(1, max_side // max(im.size))
    except (OSError, ValueError, SyntaxError):
        return None
    return f"data:image/{kind};base64," + base64.b64encode(raw).decode("ascii"), width


def nearest(grids: list[tuple[int, Path]], it: int) -> tuple[int, Path]:
    return min(grids, key=lambda g: (abs(g[0] - it), g[0]))


def strip_of(grids: list[tuple[int, Path]], n: int) -> list[tuple[int, Path]]:
    """n grids evenly spread over training, the first and the last among them."""
    if len(grids) <= n:
        return list(grids)
    step = (len(grids) - 1) / (n - 1)
    return [grids[round(i * step)] for i in range(n)]


def show(it: int, path: Path, side: int, note: str = "", jpeg: bool = False) -> Shown:
    got = data_uri(path, side, jpeg)
    if got is None:
        return Shown(it, None, f"{path.name} could not be read (being written?)")
    return Shown(it, got[0], note, got[1])


def run_grids(run: Run, side: int, strip: int, thumb: int, jpeg: bool = False
              ) -> tuple[Shown | None, Shown | None, list[Shown]]:
    """(the grid at the best FID, the last grid, the strip) of one run."""
    if not run.grids:
        return None, None, []
    best = stats.best(run)
    at_best = None
    if best is not None:
        it, path = nearest(run.grids, best[0])
        where = "" if it == best[0] else f" (the nearest grid to the best FID's {best[0]})"
        at_best = show(it, path, side, f"iteration {it}{where}", jpeg)
    last_it, last_path = run.grids[-1]
    last = show(last_it, last_path, side, f"iteration {last_it}", jpeg)
    return at_best, last, [show(i, p, thumb, f"{i}", jpeg)
                           for i, p in strip_of(run.grids, strip)]
