"""Source of the fused inner-iteration kernel that runs ``steps`` TV-L1 inner iterations per launch.

One inner iteration is a stencil. With ``u`` the flow and ``p = (px, py)`` the dual variables:

- the new flow at a pixel o needs, from the step before, u(o), p(o), px(o - x) and py(o - y);
- the new p at o needs the new u at o, o + x and o + y, and the old p(o).

A program owns a block of pixels and, to stay free of races without a barrier, recomputes every
intermediate value its block needs from the state in memory, however many steps that takes:
``needed_points`` walks the dependencies back from the block's own pixels, and ``inner_source``
writes straight-line Triton code that computes each (step, point) once. Memory is read once and
written once per launch, so ``steps`` iterations cost the DRAM traffic of one; the price is
arithmetic, which grows with the cone of points (3 flow evaluations per pixel for one step, 15
for two).

Two other layouts compute each (step, pixel) once and shift values between neighbours instead:
``tile_source`` (tiles of whole rows, shifted across warps through shared memory) and
``strip_source`` (a one-warp program walking down a column strip, where a row above or below is a
variable and only the shifts along a row remain, as warp shuffles).

The arithmetic per point is the eager solver's (``torch_tvl1._Solver.iterate``) in the same order,
so under Triton's interpreter (numpy, no FMA contraction) a launch of two steps equals two launches
of one bit for bit, and each step's error sums equal the one-step kernel's (on tiles and strips,
up to their order of summation).
"""

from __future__ import annotations

__all__ = ["inner_source", "needed_points", "strip_source", "tile_source"]

Point = tuple[int, int]
_X, _Y = (1, 0), (0, 1)


def _add(a: Point, b: Point) -> Point:
    return a[0] + b[0], a[1] + b[1]


def _sub(a: Point, b: Point) -> Point:
    return a[0] - b[0], a[1] - b[1]


def needed_points(steps: int) -> tuple[list[set[Point]], list[set[Point]]]:
    """The points, relative to a pixel, where each step's flow and dual variables are needed.

    Returns (flow, dual): two lists of ``steps + 1`` sets, index k for the state after step k
    (index 0: the state read from memory). The last step's dual variables are needed at the
    pixel only, its flow there and at the right and lower neighbours.

    >>> flow, dual = needed_points(1)
    >>> sorted(flow[1]), sorted(dual[0])
    ([(0, 0), (0, 1), (1, 0)], [(-1, 0), (-1, 1), (0, -1), (0, 0), (0, 1), (1, -1), (1, 0)])
    """
    if steps < 1:
        raise ValueError(f"steps should be >= 1, got {steps}")
    flow = [set() for _ in range(steps + 1)]
    dual = [set() for _ in range(steps + 1)]
    flow[steps].add((0, 0))
    dual[steps].add((0, 0))
    for k in range(steps, 0, -1):
        for o in dual[k]:  # p_k(o) <- u_k(o), u_k(o+x), u_k(o+y), p_{k-1}(o)
            flow[k].update((o, _add(o, _X), _add(o, _Y)))
            dual[k - 1].add(o)
        for o in flow[k]:  # u_k(o) <- u_{k-1}(o), p_{k-1}(o), px_{k-1}(o-x), py_{k-1}(o-y)
            flow[k - 1].add(o)
            dual[k - 1].update((o, _sub(o, _X), _sub(o, _Y)))
    return flow, dual


def _tag(o: Point) -> str:
    return "_".join(f"m{-v}" if v < 0 else str(v) for v in o)


def _cond(o: Point) -> str:
    """The in-image test of point o relative to the block's (x, y), in Triton source."""
    dx, dy = o
    parts = []
    if dx < 0:
        parts.append(f"(x >= {-dx})")
    if dx > 0:
        parts.append(f"(x + {dx} < w)")
    if dy < 0:
        parts.append(f"(y >= {-dy})")
    if dy > 0:
        parts.append(f"(y + {dy} < h)")
    return " & ".join(["m", *parts])


def _load(ptr: str, base: str, o: Point, other: str = "0.0") -> str:
    t = _tag(o)
    return f"tl.load({ptr} + {base} + q_{t}, mask=in_{t}, other={other})"


def _memory_lines(flow: list[set[Point]], dual: list[set[Point]], channels: int) -> list[str]:
    """Offsets and in-image masks of every point, then the state in memory (step 0) and the warp
    constants where the steps need them, each loaded once."""
    lines = []
    for o in sorted(set().union(*flow, *dual)):
        t = _tag(o)
        lines += [f"    q_{t} = q + ({o[1]}) * w + ({o[0]})", f"    in_{t} = {_cond(o)}"]
    for o in sorted(flow[0]):
        lines += [f"    u0_{c}_{_tag(o)} = {_load('u_ptr', f'bc + {c} * hw', o)}" for c in range(channels)]
    for o in sorted(dual[0]):
        for c in range(channels):
            lines.append(f"    px0_{c}_{_tag(o)} = {_load('px_ptr', f'bc + {c} * hw', o)}")
            lines.append(f"    py0_{c}_{_tag(o)} = {_load('py_ptr', f'bc + {c} * hw', o)}")
    for o in sorted(set().union(*flow[1:])):
        t = _tag(o)
        lines.append(f"    rc_{t} = {_load('rc_ptr', 'b1', o)}")
        lines.append(f"    ng_{t} = {_load('ng_ptr', 'b1', o, '-1.0')}")  # -1: no division by 0 outside
        lines += [f"    iw{c}_{t} = {_load('iw_ptr', f'bc + {c} * hw', o)}" for c in range(channels)]
    return lines


def _primal_text(v, channels: int, has_left: str, has_above: str) -> list[str]:
    """``iterate``'s thresholding step and primal update of every channel, as Triton text.

    ``v(name, c)`` gives the expression of a value: "rc", "ng", "iw", "u", "px", "py" here,
    "px_left" and "py_above" at the neighbours, "new_u" the name to assign; ``has_left`` and
    ``has_above`` test that the pixel is not in column 0 / row 0.
    """
    # v = u + clamp((rho_c + sum iw*u) / -|grad|^2, +-l_t) * iw
    lines = [f"    rho = {v('rc', 0)}"]
    lines += [f"    rho = rho + {v('iw', c)} * {v('u', c)}" for c in range(channels)]
    lines.append(f"    fi = tl.minimum(tl.maximum(rho / {v('ng', 0)}, -l_t), l_t)")
    for c in range(channels):
        # u = v + theta * div p; the divergence drops p outside row 0 / column 0.
        lines += [
            f"    d = {v('px', c)}",
            f"    d = d - tl.where({has_left}, {v('px_left', c)}, 0.0)",
            f"    d = d + {v('py', c)}",
            f"    d = d - tl.where({has_above}, {v('py_above', c)}, 0.0)",
            f"    {v('new_u', c)} = d * theta + ({v('u', c)} + fi * {v('iw', c)})",
        ]
    return lines


def _dual_text(v, channels: int, has_right: str, has_below: str) -> list[str]:
    """``iterate``'s dual update of every channel, as Triton text: ``v(name, c)`` gives "u" (the
    new flow), "u_right", "u_below", "px", "py" and the names "new_px", "new_py" to assign."""
    lines = []
    for c in range(channels):
        # p = (p + taut * grad u) / (1 + taut * |grad u|), forward differences, 0 at the end.
        lines += [
            f"    gx = tl.where({has_right}, {v('u_right', c)} - {v('u', c)}, 0.0)",
            f"    gy = tl.where({has_below}, {v('u_below', c)} - {v('u', c)}, 0.0)",
            "    den = tl.sqrt(gx * gx + gy * gy) * taut + 1.0",
            f"    {v('new_px', c)} = ({v('px', c)} + gx * taut) / den",
            f"    {v('new_py', c)} = ({v('py', c)} + gy * taut) / den",
        ]
    return lines


def _flow_lines(k: int, o: Point, channels: int) -> list[str]:
    """u after step k at point o, every channel."""
    t, tx, ty = _tag(o), _tag(_sub(o, _X)), _tag(_sub(o, _Y))
    names = {"rc": f"rc_{t}", "ng": f"ng_{t}", "iw": f"iw{{c}}_{t}", "u": f"u{k - 1}_{{c}}_{t}",
             "px": f"px{k - 1}_{{c}}_{t}", "py": f"py{k - 1}_{{c}}_{t}", "px_left": f"px{k - 1}_{{c}}_{tx}",
             "py_above": f"py{k - 1}_{{c}}_{ty}", "new_u": f"u{k}_{{c}}_{t}"}
    return _primal_text(lambda name, c: names[name].format(c=c), channels, f"x + ({o[0]}) > 0", f"y + ({o[1]}) > 0")


def _dual_lines(k: int, o: Point, channels: int) -> list[str]:
    """p after step k at point o, every channel."""
    t, tx, ty = _tag(o), _tag(_add(o, _X)), _tag(_add(o, _Y))
    names = {"u": f"u{k}_{{c}}_{t}", "u_right": f"u{k}_{{c}}_{tx}", "u_below": f"u{k}_{{c}}_{ty}",
             "px": f"px{k - 1}_{{c}}_{t}", "py": f"py{k - 1}_{{c}}_{t}", "new_px": f"px{k}_{{c}}_{t}",
             "new_py": f"py{k}_{{c}}_{t}"}
    return _dual_text(lambda name, c: names[name].format(c=c), channels, f"x + ({o[0] + 1}) < w",
                      f"y + ({o[1] + 1}) < h")


def _error_lines(k: int, channels: int) -> list[str]:
    """Step k's squared flow change summed over the block, into ``part[k - 1, b, blk]``."""
    lines = ["    err = tl.zeros((BLOCK,), dtype=tl.float32)"]
    for c in range(channels):
        lines += [f"    diff = u{k}_{c}_0_0 - u{k - 1}_{c}_0_0", "    err += tl.where(m, diff * diff, 0.0)"]
    lines.append(f"    tl.store(part_ptr + ({k - 1} * n + b) * nblk + blk, tl.sum(err, axis=0))")
    return lines


def inner_source(name: str, steps: int, channels: int) -> str:
    """Triton source of kernel ``name``: ``steps`` inner iterations on a block of pixels.

    Signature: ``(u, px, py, iw, ng, rc, active, u_out, px_out, py_out, part, n, h, w, l_t,
    theta, taut, BLOCK)``. The state (u, px, py) and ``iw`` are (n, C, H, W) contiguous, ``ng``
    (-|grad I1w|^2) and ``rc`` (rho's constant part) (n, 1, H, W); ``active`` (n,) uint8: a pair
    at 0 is skipped. ``part`` (steps, n, blocks) receives each step's sum of
    squared flow change over the block. Grid: (blocks, n).
    """
    flow, dual = needed_points(steps)
    lines = [
        f"def {name}(u_ptr, px_ptr, py_ptr, iw_ptr, ng_ptr, rc_ptr, active_ptr, u_out, px_out, py_out,",
        "        part_ptr, n, h, w, l_t, theta, taut, BLOCK: tl.constexpr):",
        "    blk = tl.program_id(0)",
        "    b = tl.program_id(1)",
        "    nblk = tl.num_programs(0)",
        "    if tl.load(active_ptr + b) == 0:",  # a stopped pair: nothing to read, compute or write
        "        return",
        "    hw = h * w",
        "    q = blk * BLOCK + tl.arange(0, BLOCK)",
        "    m = q < hw",
        "    y = q // w",
        "    x = q - y * w",
        f"    bc = b.to(tl.int64) * {channels} * hw",
        "    b1 = b.to(tl.int64) * hw",
        *_memory_lines(flow, dual, channels),
    ]
    for k in range(1, steps + 1):
        for o in sorted(flow[k]):
            lines += _flow_lines(k, o, channels)
        for o in sorted(dual[k]):
            lines += _dual_lines(k, o, channels)
        lines += _error_lines(k, channels)
    for c in range(channels):
        for ptr, var in (("u_out", "u"), ("px_out", "px"), ("py_out", "py")):
            lines.append(f"    tl.store({ptr} + bc + {c} * hw + q, {var}{steps}_{c}_0_0, mask=m)")
    return "\n".join(lines) + "\n"


def tile_source(name: str, steps: int, channels: int, rows: int, columns: bool = False) -> str:
    """Triton source of kernel ``name``: ``steps`` inner iterations on a tile of ``rows`` whole rows.

    The other way to give a step its neighbours: instead of recomputing them, a program holds a
    (rows, BW) tile (BW a power of two >= W) and shifts whole tensors by one row or column with
    ``tl.gather`` (warp shuffles along a row, shared memory across rows). Each step is computed
    once per tile pixel, but a step's border rows lack a neighbour: the tile reads ``steps`` rows
    above and below the ``rows - 2 * steps`` it writes. Same signature and ``part`` as
    ``inner_source``, with ``BW`` for ``BLOCK``; grid: (ceil(H / (rows - 2 * steps)), n).

    ``columns``: for images wider than BW. The rows are cut into column tiles that likewise read
    ``steps`` columns at either side of the ``BW - 2 * steps`` they write; grid: (row tiles x
    column tiles, n), the column tile varying fastest. A separate kernel: one kernel for both,
    its halo chosen at run time, cost whole-row tiles more warp instructions per pixel-iteration
    (tools/kernels/sass_model.py counts them).
    """
    own = rows - 2 * steps
    if own < 1:
        raise ValueError(f"rows should be > 2 * steps = {2 * steps}, got {rows}")
    if columns:
        place = [
            f"    ncols = tl.cdiv(w, BW - {2 * steps})",
            "    row_tile = tile // ncols",
            "    col_tile = tile - row_tile * ncols",
            f"    y = row_tile * {own} - {steps} + i + j * 0",
            f"    x = col_tile * (BW - {2 * steps}) - {steps} + j + i * 0",
            "    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)",
            f"    mine = inside & (i >= {steps}) & (i < {steps + own}) & (j >= {steps}) & (j < BW - {steps})",
        ]
        column = "j + i * 0"  # in the tile, not the image
    else:
        place = [
            f"    y = tile * {own} - {steps} + i + j * 0",
            "    x = j + i * 0",
            "    inside = (y >= 0) & (y < h) & (x < w)",
            f"    mine = inside & (i >= {steps}) & (i < {steps + own})",
        ]
        column = "x"
    lines = [
        f"def {name}(u_ptr, px_ptr, py_ptr, iw_ptr, ng_ptr, rc_ptr, active_ptr, u_out, px_out, py_out,",
        "        part_ptr, n, h, w, l_t, theta, taut, BW: tl.constexpr):",
        "    tile = tl.program_id(0)",
        "    b = tl.program_id(1)",
        "    ntiles = tl.num_programs(0)",
        "    if tl.load(active_ptr + b) == 0:",  # a stopped pair: nothing to read, compute or write
        "        return",
        "    hw = h * w",
        f"    i = tl.arange(0, {rows})[:, None]",
        "    j = tl.arange(0, BW)[None, :]",
        *place,
        "    off = y * w + x",
        f"    bc = b.to(tl.int64) * {channels} * hw",
        "    b1 = b.to(tl.int64) * hw",
        # Neighbour indices for tl.gather; clamped at the tile's edge, where the values are unused.
        f"    left = tl.maximum({column} - 1, 0)",
        f"    right = tl.minimum({column} + 1, BW - 1)",
        "    up = tl.maximum(i - 1, 0) + j * 0",
        f"    down = tl.minimum(i + 1, {rows - 1}) + j * 0",
        "    rc = tl.load(rc_ptr + b1 + off, mask=inside, other=0.0)",
        "    ng = tl.load(ng_ptr + b1 + off, mask=inside, other=-1.0)",
    ]
    for c in range(channels):
        for var, ptr in (("u", "u_ptr"), ("px", "px_ptr"), ("py", "py_ptr"), ("iw", "iw_ptr")):
            lines.append(f"    {var}{c} = tl.load({ptr} + bc + {c} * hw + off, mask=inside, other=0.0)")
    # One step on the whole tile; a neighbour is the tensor shifted by one column or row.
    tile_names = {"rc": "rc", "ng": "ng", "iw": "iw{c}", "u": "u{c}", "px": "px{c}", "py": "py{c}",
                  "px_left": "tl.gather(px{c}, left, 1)", "py_above": "tl.gather(py{c}, up, 0)", "new_u": "nu{c}"}
    dual_names = {"u": "nu{c}", "u_right": "tl.gather(nu{c}, right, 1)", "u_below": "tl.gather(nu{c}, down, 0)",
                  "px": "px{c}", "py": "py{c}", "new_px": "px{c}", "new_py": "py{c}"}
    for k in range(1, steps + 1):
        lines += _primal_text(lambda name, c: tile_names[name].format(c=c), channels, "x > 0", "y > 0")
        lines.append(f"    err = tl.zeros(({rows}, BW), dtype=tl.float32)")
        for c in range(channels):
            lines += [f"    diff = nu{c} - u{c}", "    err += tl.where(mine, diff * diff, 0.0)"]
        lines.append(f"    tl.store(part_ptr + ({k - 1} * n + b) * ntiles + tile, tl.sum(tl.sum(err, axis=1), axis=0))")
        lines += _dual_text(lambda name, c: dual_names[name].format(c=c), channels, "x + 1 < w", "y + 1 < h")
        lines += [f"    u{c} = nu{c}" for c in range(channels)]
    for c in range(channels):
        for ptr, var in (("u_out", "u"), ("px_out", "px"), ("py_out", "py")):
            lines.append(f"    tl.store({ptr} + bc + {c} * hw + off, {var}{c}, mask=mine)")
    return "\n".join(lines) + "\n"


def strip_source(name: str, steps: int, channels: int, prefetch: bool = False) -> str:
    """Triton source of kernel ``name``: ``steps`` inner iterations on a strip of BW columns, all rows.

    The third way to give a step its neighbours, made for many steps a launch: a program walks
    down a (H, BW) column strip one row at a time and keeps every step in flight, as a wavefront.
    When it reads row r of the state, step k computes the flow of row r - k + 1 and the dual
    variables of row r - k; the rows a step needs from the step before were computed at this row
    or the one before and are carried in registers. A row above or below is a variable, not a
    shift, so the only shifts are along the row, by ``tl.gather`` on a (BW,) tensor (warp shuffles
    when a program is one warp). The rows need no halo; the columns do: step k is wrong in its k
    edge columns on either side, so a strip writes the ``BW - 2 * steps`` middle ones and the
    next strip reads its edges again. The warp constants are read once per row and step (cache
    hits after the first). Same signature and ``part`` as ``inner_source``, with ``BW`` for
    ``BLOCK``; grid: (ceil(W / (BW - 2 * steps)), n).

    ``prefetch``: load the next row's state and first-step constants (their first read, from
    DRAM) one row ahead, so that their latency overlaps a row of arithmetic instead of stalling
    the warp; costs registers. An option for the GPU to measure (tools/gpu/gpu_launch_shapes.py).
    """
    own = f"(BW - {2 * steps})"
    lines = [
        f"def {name}(u_ptr, px_ptr, py_ptr, iw_ptr, ng_ptr, rc_ptr, active_ptr, u_out, px_out, py_out,",
        "        part_ptr, n, h, w, l_t, theta, taut, BW: tl.constexpr):",
        "    strip = tl.program_id(0)",
        "    b = tl.program_id(1)",
        "    nstrips = tl.num_programs(0)",
        "    if tl.load(active_ptr + b) == 0:",  # a stopped pair: nothing to read, compute or write
        "        return",
        "    hw = h * w",
        "    j = tl.arange(0, BW)",
        f"    x = strip * {own} - {steps} + j",
        "    inside = (x >= 0) & (x < w)",
        f"    mine = inside & (j >= {steps}) & (j < BW - {steps})",
        # Neighbour indices for tl.gather; clamped at the strip's edge, where the values are unused.
        "    left = tl.maximum(j - 1, 0)",
        "    right = tl.minimum(j + 1, BW - 1)",
        f"    bc = b.to(tl.int64) * {channels} * hw",
        "    b1 = b.to(tl.int64) * hw",
        "    zero = tl.zeros((BW,), dtype=tl.float32)",
    ]
    # Carried from the row before: step k's flow (its row r - k) for k >= 1, step k's dual
    # variables (row r - k - 1) for k < steps, with step 0 the state in memory; each step's error.
    for c in range(channels):
        lines += [f"    uc{k}_{c} = zero" for k in range(1, steps + 1)]
        lines += [f"    pxc{k}_{c} = zero\n    pyc{k}_{c} = zero" for k in range(steps)]
    lines += [f"    err{k} = zero" for k in range(1, steps + 1)]
    # A while loop, not range(): triton 3.6's interpreter cannot take a range bound computed from
    # an argument (numpy 2 refuses int() of its 1-element array); compiled, both are one loop.
    first_reads = [(f"u0_{c}", f"u_ptr + bc + {c} * hw", "0.0") for c in range(channels)]
    first_reads += [(f"{v}0_{c}", f"{v}_ptr + bc + {c} * hw", "0.0") for c in range(channels) for v in ("px", "py")]
    constants = [("rc", "rc_ptr + b1", "0.0"), ("ng", "ng_ptr + b1", "-1.0")]  # -1: no division by 0 outside
    constants += [(f"iw{c}", f"iw_ptr + bc + {c} * hw", "0.0") for c in range(channels)]
    if prefetch:  # row 0 before the loop, then row r + 1 while row r is computed
        first_reads += constants
        lines += ["    at = inside & (h > 0)"]
        lines += [f"    next_{var} = tl.load({ptr} + x, mask=at, other={other})" for var, ptr, other in first_reads]
    lines += ["    r = 0", f"    while r < h + {steps}:"]
    if prefetch:
        lines += [f"        {var} = next_{var}" for var, _, _ in first_reads]
        lines += ["        at = inside & (r + 1 < h)", "        off = (r + 1) * w + x"]
        lines += [f"        next_{var} = tl.load({ptr} + off, mask=at, other={other})"
                  for var, ptr, other in first_reads]
    else:
        lines += ["        at = inside & (r < h)", "        off = r * w + x"]
        lines += [f"        {var} = tl.load({ptr} + off, mask=at, other={other})" for var, ptr, other in first_reads]
    for k in range(1, steps + 1):
        row = f"y{k}"
        lines += [
            f"        {row} = r - {k - 1}",
            f"        at = inside & ({row} >= 0) & ({row} < h)",
            f"        off = {row} * w + x",
        ]
        if not (prefetch and k == 1):  # the first step's constants were prefetched with the state
            lines += [f"        {var} = tl.load({ptr} + off, mask=at, other={other})" for var, ptr, other in constants]
        before = "u0" if k == 1 else f"uc{k - 1}"  # the step before's flow at row y_k
        names = {"rc": "rc", "ng": "ng", "iw": "iw{c}", "u": before + "_{c}", "px": f"px{k - 1}_{{c}}",
                 "py": f"py{k - 1}_{{c}}", "px_left": f"tl.gather(px{k - 1}_{{c}}, left, 0)",
                 "py_above": f"pyc{k - 1}_{{c}}", "new_u": f"u{k}_{{c}}"}
        primal = _primal_text(lambda key, c, names=names: names[key].format(c=c), channels, "x > 0", f"{row} > 0")
        lines += ["    " + line for line in primal]
        for c in range(channels):
            lines += [f"        diff = u{k}_{c} - {before}_{c}",
                      f"        err{k} += tl.where(at & mine, diff * diff, 0.0)"]
        # The dual variables of row y_k - 1: its flow was carried, the row below is the new one.
        names = {"u": f"uc{k}_{{c}}", "u_right": f"tl.gather(uc{k}_{{c}}, right, 0)", "u_below": f"u{k}_{{c}}",
                 "px": f"pxc{k - 1}_{{c}}", "py": f"pyc{k - 1}_{{c}}", "new_px": f"px{k}_{{c}}",
                 "new_py": f"py{k}_{{c}}"}
        dual = _dual_text(lambda key, c, names=names: names[key].format(c=c), channels, "x + 1 < w", f"{row} < h")
        lines += ["    " + line for line in dual]
    lines += [
        f"        y = r - {steps}",
        "        at = mine & (y >= 0)",
        "        off = y * w + x",
    ]
    for c in range(channels):
        lines += [f"        tl.store(u_out + bc + {c} * hw + off, uc{steps}_{c}, mask=at)",
                  f"        tl.store(px_out + bc + {c} * hw + off, px{steps}_{c}, mask=at)",
                  f"        tl.store(py_out + bc + {c} * hw + off, py{steps}_{c}, mask=at)"]
        lines += [f"        uc{k}_{c} = u{k}_{c}" for k in range(1, steps + 1)]
        lines += [f"        pxc{k}_{c} = px{k}_{c}\n        pyc{k}_{c} = py{k}_{c}" for k in range(steps)]
    lines.append("        r += 1")
    lines += [f"    tl.store(part_ptr + ({k - 1} * n + b) * nstrips + strip, tl.sum(err{k}, axis=0))"
              for k in range(1, steps + 1)]
    return "\n".join(lines) + "\n"
